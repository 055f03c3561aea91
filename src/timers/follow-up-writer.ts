/** The rows of timers fired at once, kept in step with their aggregates' states in shared transactions. */
import { exclusively, type Database, type ExclusiveWriter, type SqlOp } from "../persistence/index.js";

/**
 * Writes each fired timer's follow-up (timerFollowUp): the first at once, and those that come while a
 * write is under way together, in one transaction, once it is done — as the group commit does with
 * commands. Alone, each was a transaction of its own, and on SQLite an exclusive turn that made the write
 * worker drain its group commits first. A follow-up is conditional on its row being the one that fired,
 * so its place among commands does not matter; a failed transaction fails each of its follow-ups.
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
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.#writing = undefined;
    }
  }
}
