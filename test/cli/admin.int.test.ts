import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command, query, startTestNerve, type TestNerve } from "../support/index.js";

const root = join(import.meta.dirname, "..", "..");
let t: TestNerve;

function cli(...args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: root, env: { ...process.env, NATS_URL: t.nats.url } });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

beforeAll(async () => {
  t = await startTestNerve();
  for (let i = 0; i < 30; i++) await command(t.client, "users", "RegisterUser", `cli${i}`, { email: `cli${i}@example.com`, name: `C${i}` });
  await vi.waitFor(async () => expect((await query(t.client, "notifications", "ListNotifications", { user_id: "cli29" })).body.result.items).toHaveLength(1), { timeout: 10_000 });
});
afterAll(async () => {
  await t?.close();
});

describe("npm run nerve", () => {
  it("replays a consumer with progress while the service runs, rebuilding the same read model", async () => {
    const before = (await query(t.client, "notifications", "ListNotifications", { user_id: "cli7" })).body.result.items;
    const { code, out } = await cli("replay", "notifications");
    expect(code).toBe(0);
    expect(out).toMatch(/replayed \d+ events into notifications/);
    const after = (await query(t.client, "notifications", "ListNotifications", { user_id: "cli7" })).body.result.items;
    expect(after).toEqual(before);
  });

  it("shows the lag of every consumer", async () => {
    const { code, out } = await cli("lag");
    expect(code).toBe(0);
    expect(out).toContain("notifications");
    expect(out).toContain("EVENTS_USERS");
  });

  it("lists dead letters and refuses an unknown consumer with a clear message", async () => {
    const list = await cli("dead-letters");
    expect(list.code).toBe(0);
    expect(JSON.parse(list.out)).toEqual([]);
    const bad = await cli("replay", "nobody");
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("not_found: no consumer nobody");
  });

  it("prints its usage without a command", async () => {
    const { code, out } = await cli();
    expect(code).toBe(2);
    expect(out).toContain("replay <consumer>");
  });
});
