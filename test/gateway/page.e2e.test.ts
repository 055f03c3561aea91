import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNerve, type TestNerve } from "../support/index.js";
import { grant, progress, startTestGateway, token } from "./support.js";

const SCREENSHOT = resolve("test-results/gateway-page.png");
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let t: TestNerve;
let gw: Awaited<ReturnType<typeof startTestGateway>>;
let profile: string;
let browser: BrowserContext;
beforeAll(async () => {
  t = await startTestNerve();
  gw = await startTestGateway(t.nats.url, { devTokens: true });
  profile = await mkdtemp(join(tmpdir(), "nerve-chromium-"));
  // A persistent context is how Playwright takes a fresh --user-data-dir.
  browser = await chromium.launchPersistentContext(profile, { executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS, viewport: { width: 900, height: 520 } });
});
afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await t?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

const course = (page: Page, courseId: string) => page.locator(`.course[data-course-id="${courseId}"]`);

describe("the live-progress page in Chromium", () => {
  it("shows a learner's courses and moves the bars as progress changes", async ({ annotate }) => {
    await grant(t.client, "ada", "algebra");
    await grant(t.client, "ada", "physics");
    await progress(t.client, "ada", "algebra", 20);
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${gw.port}/#token=${await token("ada")}`);
    await expect.poll(() => page.textContent("#status")).toBe("live as ada");
    await expect.poll(() => course(page, "algebra").getAttribute("data-progress")).toBe("20");
    await expect.poll(() => course(page, "physics").getAttribute("data-progress")).toBe("0");

    // Progress made elsewhere (another device, the command path) moves the bar live.
    await progress(t.client, "ada", "algebra", 65);
    await expect.poll(() => course(page, "algebra").getAttribute("data-progress")).toBe("65");
    expect(await course(page, "algebra").locator(".fill").evaluate((el) => (el as unknown as { style: { width: string } }).style.width)).toBe("65%");
    expect(await course(page, "algebra").locator(".pct").textContent()).toBe("65%");

    // The page's own button sends UpdateProgress over the socket.
    await course(page, "physics").locator("button.step").click();
    await expect.poll(() => course(page, "physics").getAttribute("data-progress")).toBe("10");

    // Completion shows as such.
    await progress(t.client, "ada", "physics", 100);
    await expect.poll(() => course(page, "physics").locator(".badge").textContent()).toBe("completed");

    await page.waitForTimeout(500); // let the bars' transition finish
    await mkdir("test-results", { recursive: true });
    const png = await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`screenshot: ${SCREENSHOT}`);
    // Inline body, not `path`: a path attachment is copied into .vitest-attachments/ in the repository.
    await annotate(`screenshot saved to ${SCREENSHOT}`, "screenshot", { body: png.toString("base64"), contentType: "image/png" });
    await page.close();
  });

  it("signs in with a development token and sees a new grant appear", async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${gw.port}/`);
    await page.fill("#user", "bob");
    await page.click("#signin button");
    await expect.poll(() => page.textContent("#status")).toBe("live as bob");
    expect(await page.locator(".course").count()).toBe(0);
    await grant(t.client, "bob", "biology");
    await expect.poll(() => course(page, "biology").getAttribute("data-progress")).toBe("0");
    // Nothing of Ada's shows here.
    expect(await page.locator('.course[data-course-id="algebra"]').count()).toBe(0);
    await page.close();
  });
});
