/** A bounded window of concurrent operations: never one await at a time, never unbounded. */

/** What a windowed run managed. */
export interface WindowRun {
  /** Operations started (and finished). */
  done: number;
  /** Wall time of the run, ms. */
  ms: number;
  /** Whether the deadline stopped the run before `total`. */
  cutShort: boolean;
}

/**
 * Runs `op(0) … op(total-1)` with at most `window` in flight, starting the next as soon as one
 * settles. Stops starting new ones at `deadline` (epoch ms). The first error stops the run and is rethrown.
 */
export async function runWindowed(total: number, window: number, op: (i: number) => Promise<void>, deadline = Infinity): Promise<WindowRun> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  let cutShort = false;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < total && !failure) {
      if (Date.now() >= deadline) {
        cutShort = true;
        return;
      }
      const i = next++;
      try {
        await op(i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, total) }, worker));
  if (failure) throw failure.err;
  return { done: next, ms: performance.now() - started, cutShort };
}

/** What a fixed-rate phase did. */
export interface RatePhase {
  rate: number;
  seconds: number;
  sent: number;
  ok: number;
  failed: number;
  achievedPerSecond: number;
}

/**
 * An open loop: calls `send` `rate` times per second for `ms`, at most `maxInflight` outstanding;
 * `send` gets whether its result belongs in the latency book (sent after `warmupMs`), its index, and
 * when it was due (`performance.now()` ms: latency from then hides no stall of the sender), and
 * resolves true for a success. Waits up to 20 s for the stragglers.
 */
export async function atRate(rate: number, ms: number, warmupMs: number, onWarm: () => void, maxInflight: number, send: (measured: boolean, i: number, dueMs: number) => Promise<boolean>): Promise<RatePhase> {
  const started = performance.now();
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let inflight = 0;
  let warm = false;
  for (;;) {
    const elapsed = performance.now() - started;
    if (elapsed >= ms) break;
    if (!warm && elapsed >= warmupMs) {
      warm = true;
      onWarm();
    }
    const due = Math.floor((elapsed * rate) / 1000);
    while (sent < due && inflight < maxInflight) {
      sent++;
      inflight++;
      send(warm, sent - 1, started + (sent * 1000) / rate).then(
        (good) => {
          inflight--;
          if (good) ok++;
          else failed++;
        },
        () => {
          inflight--;
          failed++;
        },
      );
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const seconds = (performance.now() - started) / 1000;
  const drainUntil = Date.now() + 20_000;
  while (inflight > 0 && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
  return { rate, seconds, sent, ok, failed, achievedPerSecond: sent / seconds };
}
