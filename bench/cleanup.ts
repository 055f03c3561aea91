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
