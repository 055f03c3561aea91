/** The rows of timers fired at once, kept in step with their aggregates' states in shared transactions. */
import { exclusively, type Database, type ExclusiveWriter, type SqlOp } from "../persistence/index.js";
import { isTransientFailure } from "../consumers/transient.js";

/**
 * Writes each fired timer's follow-up (timerFollowUp): the first at once, and those that come while a
 * write is under way together, in one transaction, once it is done — as the group commit does with
 * commands. Alone, each was a transaction of its own, and on SQLite an exclusive turn that made the write
 * worker drain its group commits first. A follow-up is conditional on its row being the one that fired,
 * so its place among commands does not matter. A shared transaction that fails for a reason of its own
 * (not the database away or busy) is written again one follow-up at a time, so that one bad follow-up
 * (a kind's deadline the column refuses) fails alone and the others are written, as before they shared.
 */
export class FollowUpWriter {
  readonly #db: Database;
  readonly #writer: ExclusiveWriter | undefined;
  #pending: { op: SqlOp; resolve: () => void; reject: (err: unknown) => void }[] = [];
  #writing: Promise<void> | undefined;

  constructor(db: Database, writer: ExclusiveWriter | undefined) {
    this.#db = db;
    this.#writer = writer;
  }

  /** Resolves once `op` is committed; rejects with what failed its transaction. */
  write(op: SqlOp): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ op, resolve, reject });
      this.#writing ??= this.#drain();
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0);
        try {
          await exclusively(this.#writer, () =>
            batch.length === 1
              ? this.#db.execute(batch[0]!.op.sql, batch[0]!.op.params, "run")
              : this.#db.connection.transactional(async (trx) => {
                  for (const { op } of batch) await this.#db.execute(op.sql, op.params, "run", trx);
                }),
          );
          for (const b of batch) b.resolve();
        } catch (err) {
          if (batch.length === 1 || isTransientFailure(err)) for (const b of batch) b.reject(err);
          else await this.#oneByOne(batch);
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }

  /** Writes each follow-up of a batch whose shared transaction failed in a transaction of its own, in one exclusive turn. */
  async #oneByOne(batch: { op: SqlOp; resolve: () => void; reject: (err: unknown) => void }[]): Promise<void> {
    await exclusively(this.#writer, async () => {
      for (const b of batch) {
        try {
          await this.#db.execute(b.op.sql, b.op.params, "run");
          b.resolve();
        } catch (err) {
          b.reject(err);
        }
      }
    }).catch((err: unknown) => {
      // The turn itself failed (the writer closing): whatever is still waiting fails with it.
      for (const b of batch) b.reject(err);
    });
  }
}
