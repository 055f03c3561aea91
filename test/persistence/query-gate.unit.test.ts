import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { QueriesOverloaded, QueryFailed, QueryGate, QueryUnavailable } from "../../src/persistence/index.js";
import { isTransientFailure } from "../../src/consumers/transient.js";

/** A query that ends when told to. */
function pending<T>(value: T) {
  let finish!: () => void;
  const done = new Promise<T>((resolve) => (finish = () => resolve(value)));
  return { run: () => done, finish };
}

/** Settles pending promise callbacks (no timers run). */
const flush = () => new Promise<void>((r) => queueMicrotask(() => setImmediate(r)));

describe("QueryGate", () => {
  beforeEach(() => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] }));
  afterEach(() => vi.useRealTimers());

  it("runs `limit` queries at once and hands each finished one's turn to the longest waiter", async () => {
    const gate = new QueryGate(2, 3000, 10);
    const started: string[] = [];
    const q = (name: string) => {
      const p = pending(name);
      return { ...p, result: gate.run(() => (started.push(name), p.run())) };
    };
    const [a, b, c, d] = [q("a"), q("b"), q("c"), q("d")];
    await flush();
    expect(started).toEqual(["a", "b"]);
    b.finish();
    expect(await b.result).toBe("b");
    await flush();
    expect(started).toEqual(["a", "b", "c"]);
    a.finish();
    c.finish();
    await flush();
    expect(started).toEqual(["a", "b", "c", "d"]);
    d.finish();
    expect(await Promise.all([a.result, c.result, d.result])).toEqual(["a", "c", "d"]);
    expect(gate.stats).toEqual({ queries: 4, failures: 0, refused: 0, cancelled: 0 });
  });

  it("refuses at once beyond `maxWaiting` waiting, and a waiter whose turn does not come within `maxWaitMs`", async () => {
    const gate = new QueryGate(1, 3000, 2);
    const running = pending("running");
    const first = gate.run(running.run);
    const waiting = [gate.run(async () => "w1"), gate.run(async () => "w2")].map((p) => p.catch((e: unknown) => e));
    await expect(gate.run(async () => "one too many")).rejects.toBeInstanceOf(QueriesOverloaded);
    vi.advanceTimersByTime(3000);
    for (const w of await Promise.all(waiting)) expect(w).toBeInstanceOf(QueriesOverloaded);
    expect(gate.stats.refused).toBe(3);
    // The running query keeps its turn; after it the gate serves again.
    running.finish();
    expect(await first).toBe("running");
    expect(await gate.run(async () => "again")).toBe("again");
  });

  it("counts a failed query and frees its turn; closed, fails the waiters and refuses new queries", async () => {
    const gate = new QueryGate(1, 3000, 5);
    await expect(gate.run(() => Promise.reject(new Error("syntax error")))).rejects.toThrow("syntax error");
    expect(gate.stats).toEqual({ queries: 1, failures: 1, refused: 0, cancelled: 0 });
    // PostgreSQL's statement_timeout (or pg_cancel_backend) cancels with 57014: a failure, counted apart too.
    await expect(gate.run(() => Promise.reject(Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014" })))).rejects.toThrow(/statement timeout/);
    expect(gate.stats).toEqual({ queries: 2, failures: 2, refused: 0, cancelled: 1 });
    const running = pending(1);
    const first = gate.run(running.run);
    const waiter = gate.run(async () => 2).catch((e: unknown) => e);
    gate.close();
    expect(await waiter).toBeInstanceOf(QueryFailed);
    // Transient (answered `unavailable`, retry), not a bug (`internal`): the service is stopping.
    expect(await waiter).toBeInstanceOf(QueryUnavailable);
    expect(isTransientFailure(await waiter)).toBe(true);
    await expect(gate.run(async () => 3)).rejects.toThrow(/closed/);
    running.finish();
    expect(await first).toBe(1);
  });
});
