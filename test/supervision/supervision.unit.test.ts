/** Background work never ends the process: failures are logged, counted and restarted (issue #10). */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { backgroundFailures, installProcessGuards, sayingAtMostEvery, supervise, watch } from "../../src/supervision/index.js";

function capture() {
  const lines: { level: number; msg: string; task?: string }[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (c, _e, done) => (lines.push(...String(c).split("\n").filter(Boolean).map((l) => JSON.parse(l))), done()) }));
  return { logger, lines };
}

afterEach(() => backgroundFailures.clear());

describe("supervision", () => {
  it("watch: a rejected background promise is logged and counted under its task", async () => {
    const { logger, lines } = capture();
    watch(logger, "poll", Promise.reject(new Error("database away")));
    await new Promise((r) => setImmediate(r));
    expect(backgroundFailures.get("poll")).toBe(1);
    expect(lines).toMatchObject([{ level: 50, task: "poll", msg: "background task failed" }]);
  });

  it("supervise: a task that throws or ends by itself runs again after a back-off, until stopped", async () => {
    const { logger } = capture();
    let runs = 0;
    const task = supervise(
      logger,
      "loop",
      async (signal) => {
        runs++;
        if (runs === 1) throw new Error("boom");
        if (runs === 2) return; // ended while not stopped: restarted too
        await new Promise((r) => signal.addEventListener("abort", r));
      },
      { minBackoffMs: 5 },
    );
    while (runs < 3) await new Promise((r) => setTimeout(r, 5));
    expect(task.restarts).toBe(2);
    expect(backgroundFailures.get("loop")).toBe(2);
    await task.stop();
    expect(runs).toBe(3);
  });

  it("the process guards count an unhandled rejection and go on; an uncaught exception exits", () => {
    const { logger, lines } = capture();
    const exits: number[] = [];
    const remove = installProcessGuards(logger, (code) => exits.push(code));
    try {
      const emit = process.emit.bind(process) as (event: string, ...args: unknown[]) => boolean;
      emit("unhandledRejection", new Error("forgotten"), Promise.resolve());
      expect(backgroundFailures.get("unhandled")).toBe(1);
      expect(exits).toEqual([]);
      emit("uncaughtException", new Error("thrown"), "uncaughtException");
      expect(exits).toEqual([1]);
      expect(lines.map((l) => l.level)).toEqual([50, 60]);
    } finally {
      remove();
    }
  });
});

describe("sayingAtMostEvery", () => {
  it("opens at the first call, then at most once per period", () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    try {
      const say = sayingAtMostEvery(60_000);
      expect([say(), say(), say()]).toEqual([true, false, false]);
      vi.advanceTimersByTime(59_999);
      expect(say()).toBe(false);
      vi.advanceTimersByTime(1);
      expect([say(), say()]).toEqual([true, false]);
    } finally {
      vi.useRealTimers();
    }
  });
});
