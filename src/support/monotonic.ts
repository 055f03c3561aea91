/**
 * Milliseconds on the process's monotonic clock (CLOCK_MONOTONIC through `process.hrtime`): the same
 * clock in every thread of the process, unlike `performance.now()`, which counts from each thread's own
 * start. Imports nothing: the SQLite write worker's thread loads it as it is.
 */
export function monotonicMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}
