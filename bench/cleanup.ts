/** Resources the bench must release however it ends: undone in reverse order, each at most once. */

/** A stack of release functions. */
export class Cleanup {
  readonly #steps: Array<{ name: string; fn: () => Promise<unknown> }> = [];

  /** Registers a release step; returns a function that runs (and forgets) just that step. */
  add(name: string, fn: () => Promise<unknown>): () => Promise<void> {
    const step = { name, fn };
    this.#steps.push(step);
    return async () => {
      const i = this.#steps.indexOf(step);
      if (i < 0) return;
      this.#steps.splice(i, 1);
      await fn();
    };
  }

  /** Runs every remaining step, newest first; a failing step is reported and the rest still run. */
  async run(timeoutMs = 20_000): Promise<void> {
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([step.fn(), timeout]);
      } catch (err) {
        console.error(`cleanup: ${step.name} failed: ${(err as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

/** How a bench ends: its results written, then its cleanup. */
export interface BenchEnd {
  /** Hard bound of the whole run; past it the bench ends with exit code 2. */
  budgetMs: number;
  cleanup: Cleanup;
  /** Writes the results (`ok`: the run succeeded; `error`: why not). */
  writeResults(ok: boolean, error?: unknown): Promise<void>;
}

/**
 * Runs `main` and ends the process once: results, then cleanup, then the exit code first asked for —
 * 0 done, 1 failed, 2 past the budget, 130 on SIGINT or SIGTERM (a later failure caused by the cleanup
 * itself changes nothing).
 */
export function runToEnd(main: () => Promise<void>, end: BenchEnd): void {
  let finishing: Promise<never> | undefined;
  const finish = (code: number, error?: unknown): Promise<never> =>
    (finishing ??= (async () => {
      if (error) console.error(`\nbench failed: ${(error as Error)?.stack ?? String(error)}`);
      await end.writeResults(code === 0, error).catch((err) => console.error(`writing results failed: ${String(err)}`));
      await end.cleanup.run();
      process.exit(code);
    })());
  const watchdog = setTimeout(() => void finish(2, new Error(`the bench exceeded its ${end.budgetMs / 1000} s budget`)), end.budgetMs);
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void finish(130, new Error(`interrupted by ${sig}`)));
  main().then(
    () => {
      clearTimeout(watchdog);
      return finish(0);
    },
    (err) => {
      clearTimeout(watchdog);
      return finish(1, err);
    },
  );
}
