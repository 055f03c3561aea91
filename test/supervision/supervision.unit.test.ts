/** Background work never ends the process: failures are logged, counted and restarted (issue #10). */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { FailureSpell, backgroundFailures, installProcessGuards, sayingAtMostEvery, supervise, watch } from "../../src/supervision/index.js";

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

describe("FailureSpell (a failure every try repeats while it lasts: the database away)", () => {
  const spell = () => {
    const { logger, lines } = capture();
    let now = 0;
    const s = new FailureSpell(logger, "leases partitions", "lease round failed", 60_000, () => now);
    return { s, lines, at: (ms: number) => (now = ms), errors: () => lines.filter((l) => l.level >= 50) };
  };

  it("given a spell of 120 failed tries a second apart, says its first at once and then at most one line a minute with how many went unsaid, counting every one", () => {
    const { s, at, errors } = spell();
    for (let i = 0; i < 120; i++) {
      at(i * 1000);
      s.failed(new Error("Connection terminated unexpectedly"));
    }
    expect(backgroundFailures.get("leases partitions")).toBe(120);
    const said = errors() as unknown as { msg: string; failures_in_a_row?: number; unsaid_since_last_line?: number }[];
    // At 0 s and at 60 s (the 61st try, after 59 unsaid); the 59 since wait for the next minute.
    expect(said.map((l) => l.msg)).toEqual(["lease round failed", "lease round failed (still failing)"]);
    expect(said.map((l) => [l.failures_in_a_row, l.unsaid_since_last_line])).toEqual([
      [undefined, undefined],
      [61, 59],
    ]);
  });

  it("when a try succeeds after a spell that was said, says how long it lasted and how many failed; a success outside a spell says nothing", () => {
    const { s, at, lines } = spell();
    s.succeeded();
    expect(lines).toHaveLength(0);
    at(1000);
    s.failed(new Error("away"));
    at(1500);
    s.failed(new Error("away"));
    at(4000);
    s.succeeded();
    const back = lines.filter((l) => l.level === 30) as unknown as { msg: string; failures: number; lasted_ms: number }[];
    expect(back).toEqual([expect.objectContaining({ msg: "leases partitions: working again", failures: 2, lasted_ms: 3000 })]);
  });

  it("bounds a flapping dependency too: blips every two seconds for a minute are one error line and one 'working again', not sixty", () => {
    const { s, at, lines, errors } = spell();
    for (let t = 0; t < 60_000; t += 2000) {
      at(t);
      s.failed(new Error("blip"));
      at(t + 1000);
      s.succeeded();
    }
    expect(backgroundFailures.get("leases partitions")).toBe(30);
    expect(errors()).toHaveLength(1);
    expect(lines.filter((l) => l.level === 30)).toHaveLength(1);
    // The next line after the minute carries the blips it did not say.
    at(61_000);
    s.failed(new Error("blip"));
    expect(errors()).toHaveLength(2);
    expect((errors()[1] as unknown as { unsaid_since_last_line: number }).unsaid_since_last_line).toBe(29);
  });

  it("says a different error at once (a bug beside the outage), each kind at most once a minute", () => {
    const { s, at, errors } = spell();
    const refused = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    at(0);
    s.failed(refused());
    at(1000);
    s.failed(new TypeError("Cannot read properties of undefined (reading 'seq')"));
    at(2000);
    s.failed(refused());
    at(3000);
    s.failed(new TypeError("Cannot read properties of undefined (reading 'seq')"));
    expect(errors().map((l) => (l as unknown as { err: { type: string } }).err.type)).toEqual(["Error", "TypeError"]);
    expect(backgroundFailures.get("leases partitions")).toBe(4);
  });

  it("says an outage that starts just after a blip was said once it has lasted 5 s, not a minute later (review)", () => {
    const { s, at, errors } = spell();
    at(0);
    s.failed(new Error("blip"));
    at(500);
    s.succeeded();
    // A 47 s outage from 12 s: within the minute of the blip's line.
    for (let t = 12_000; t < 59_000; t += 1000) {
      at(t);
      s.failed(new Error("away"));
    }
    at(59_000);
    s.succeeded();
    expect(errors()).toHaveLength(2);
    expect(errors()[1]).toMatchObject({ failures_in_a_row: 6, unsaid_since_last_line: 5 });
  });
});
