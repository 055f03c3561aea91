import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freePort } from "../support/index.js";

const root = join(import.meta.dirname, "..", "..");

function run(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], { cwd: root, env: { ...process.env, ...env } });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

describe("npm start", () => {
  it("exits with a clear message naming both remedies when nothing answers at NATS_URL", async () => {
    const port = await freePort();
    const { code, out } = await run({ NATS_URL: `nats://127.0.0.1:${port}`, NERVE_DB: "sqlite::memory:", LOG_LEVEL: "info" });
    expect(code).toBe(1);
    expect(out).toContain(`nothing answers at NATS_URL=nats://127.0.0.1:${port}`);
    expect(out).toContain("nats-server -c nats.conf");
    expect(out).toContain("apt-get install nats-server");
  });

  it("refuses a bad configuration, naming each bad variable", async () => {
    const { code, out } = await run({ NERVE_DB: "mysql://x", NERVE_HTTP_PORT: "99999", NODE_ENV: "production" });
    expect(code).toBe(2);
    expect(out).toContain("NERVE_DB");
    expect(out).toContain("NERVE_HTTP_PORT");
    expect(out).toContain("NERVE_JWT_SECRET: is required when NODE_ENV=production");
  });
});
