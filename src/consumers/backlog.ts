/**
 * How far this process's read models are behind, and when that holds commands back (the writer's
 * admission, beside the outbox relay's backlog). Without it a projection slower than the command path
 * falls behind for as long as the load lasts: the UpdateProgress bench left `analytics` and
 * `learner-progress` ~15,000 events behind after 8 s at saturation, a lag growing with the load's length.
 * With it, commands are committed no faster than the slowest projection applies their events, so a
 * read model is never more than about the limit behind (plus one group commit's events and the relay's
 * window) and catches up within a fraction of a second of the load's end.
 *
 * Who is never waited for, so that no read model can stop the command path:
 * - a reader that has not yet been within the limit since it started (a new projection replaying its
 *   stream, a consumer catching up after downtime): it joins once it has caught up;
 * - a reader that applied nothing for {@link LAG_STALLED_MS} (stuck, failing, its database away);
 * - the process managers (they issue commands: waiting for them would wait for ourselves), and
 *   readers on other instances (each instance counts its own).
 * And no wait lasts longer than the admission's own bound (1 s).
 *
 * Pure bookkeeping: the runner reports deliveries and applied batches, the manager asks.
 */

/** A reader that applied nothing for this long (ms) holds no command back. */
export const LAG_STALLED_MS = 1000;

/** One reader of one durable: events the server has not delivered yet plus those delivered and not yet applied. */
export class ReaderBacklog {
  /** The server's count of undelivered events, as of the latest delivery. */
  #pending = 0;
  /** Delivered, their batch not finished. */
  #unapplied = 0;
  #progressAt: number;
  #caughtUp = false;

  /** `pending`: the consumer's undelivered events when the reader opened (its info); within the limit, it has caught up already. */
  constructor(
    private readonly limit: number,
    now: number,
    pending: number,
  ) {
    this.#progressAt = now;
    this.#pending = pending;
    this.#note();
  }

  /** Events behind. */
  get behind(): number {
    return this.#pending + this.#unapplied;
  }

  /** A delivery arrived; `pending` is what the server still had for this consumer after it. */
  delivered(pending: number, now: number): void {
    // Work after none: the time without progress counts from here, not from the last batch before the pause.
    if (this.behind === 0) this.#progressAt = now;
    this.#pending = pending;
    this.#unapplied++;
    this.#note();
  }

  /**
   * A batch of `n` deliveries is finished: applied (skipped and dead-lettered events included), with
   * `appliedAt` the time; or failed and handed back for redelivery (`appliedAt` undefined: no progress).
   */
  finished(n: number, appliedAt: number | undefined): void {
    this.#unapplied = Math.max(0, this.#unapplied - n);
    if (appliedAt !== undefined) this.#progressAt = appliedAt;
    this.#note();
  }

  /** Whether commands should wait for this reader now. */
  holds(now: number): boolean {
    return this.#caughtUp && this.behind > this.limit && now - this.#progressAt <= LAG_STALLED_MS;
  }

  #note(): void {
    if (!this.#caughtUp && this.behind <= this.limit) this.#caughtUp = true;
  }
}
