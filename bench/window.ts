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
