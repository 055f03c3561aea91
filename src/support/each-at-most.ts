/**
 * Runs `job` for every item, at most `atOnce` at a time, then rethrows the first failure. By default every
 * item runs whatever failed before (policy-sync's moves: a partial success is kept, the rest retried);
 * with `stopOnFailure`, no job starts once one failed (the relay's lookups: the pass fails whole).
 */
export async function eachAtMost<T>(items: readonly T[], atOnce: number, job: (item: T) => Promise<unknown>, opts: { stopOnFailure?: boolean } = {}): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !(opts.stopOnFailure && failure)) {
      const item = items[next++]!;
      try {
        await job(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(atOnce, items.length) }, worker));
  if (failure) throw failure.err;
}
