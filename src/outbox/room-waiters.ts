/** The group commit's waits for room in the outbox relay's backlog (its admission). */

/** Writers waiting for the relay's backlog to shrink to their limit, each at most for its own bound. */
export class RoomWaiters {
  #waiters: { limit: number; done: () => void }[] = [];

  /** Whether nobody waits (then the relay need not even compute its backlog). */
  get empty(): boolean {
    return this.#waiters.length === 0;
  }

  /** Resolves once {@link check} sees a backlog of at most `limit`, or after `maxWaitMs`. */
  wait(limit: number, maxWaitMs: number): Promise<void> {
    return new Promise((resolve) => {
      const waiter = {
        limit,
        done: () => {
          clearTimeout(timer);
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.done, maxWaitMs);
      this.#waiters.push(waiter);
    });
  }

  /** Lets go of everyone whose limit `backlog` is within. */
  check(backlog: number): void {
    for (const w of [...this.#waiters]) if (backlog <= w.limit) w.done();
  }
}
