/** `npm start`'s nats-server of its own is stopped when the service then fails to start (src/cli/local-nats.ts). */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";
import { startBeside } from "../../src/cli/local-nats.js";

/** A real child process standing for the nats-server `npm start` started; resolves with how it ended. */
function child() {
  const p = spawn("sleep", ["30"], { stdio: "ignore" });
  const ended = once(p, "exit").then(([code, signal]) => ({ code, signal }));
  return { p, ended };
}

describe("startBeside", () => {
  it("stops the nats-server it was given when the start fails, and passes the failure on (was: left running, the next start refused)", async () => {
    const { p, ended } = child();
    await expect(startBeside(() => Promise.reject(new Error("gateway could not listen on *:8080")), p)).rejects.toThrow("gateway could not listen");
    expect(await ended).toEqual({ code: null, signal: "SIGTERM" });
  });

  it("leaves it running when the start succeeds", async () => {
    const { p, ended } = child();
    try {
      expect(await startBeside(async () => "started", p)).toBe("started");
      const early = await Promise.race([ended, new Promise((r) => setTimeout(() => r("running"), 200))]);
      expect(early).toBe("running");
    } finally {
      p.kill("SIGKILL");
      await ended;
    }
  });
});
