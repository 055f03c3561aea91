/** A shutdown past its bound still stops what the service started beside it (src/app/signals.ts), in a real child process. */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");

describe("stopOnSignals", () => {
  it("when the stop takes too long, runs `after` (the nats-server npm start started) before it exits 1 (was: exited without it)", async () => {
    const script = `
      import { stopOnSignals } from "./src/app/signals.ts";
      import { createLogger } from "./src/log/index.ts";
      stopOnSignals({ stop: () => new Promise(() => {}) }, createLogger("silent"), 100, () => console.log("after ran"));
      console.log("ready");
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    const exited = once(child, "exit");
    while (!out.includes("ready")) await new Promise((r) => setTimeout(r, 20));
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(1);
    expect(out).toContain("after ran");
  }, 30_000);
});
