/** Group commit: writes that arrive together share one transaction; nobody is answered before it commits. */
import { EventEmitter } from "node:events";
import type { Database } from "./database.js";
import { writeBatch, type AggregateWrite } from "./commit-batch.js";

interface Pending {
  write: AggregateWrite;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Figures of the writer, for metrics and the benchmark. */
export interface WriterStats {
  transactions: number;
  writes: number;
  largestBatch: number;
  retriedAlone: number;
}

/** Options of the group-commit writer. */
export interface GroupCommitOptions {
  /** Most writes in one transaction. */
  maxBatch?: number;
}

/**
 * Collects writes while a transaction is in flight and commits them together next (like PostgreSQL's
 * commit_delay, with the commit itself as the window). A batch that fails is retried write by write,
 * so one bad write (a taken e-mail, a stale snapshot) fails alone. Emits `committed` after each commit.
 */
export class GroupCommitWriter extends EventEmitter {
  readonly #db: Database;
  readonly #maxBatch: number;
  #queue: Pending[] = [];
  #running = false;
  #idle: Promise<void> = Promise.resolve();
  readonly stats: WriterStats = { transactions: 0, writes: 0, largestBatch: 0, retriedAlone: 0 };

  constructor(db: Database, opts: GroupCommitOptions = {}) {
    super();
    this.#db = db;
    this.#maxBatch = opts.maxBatch ?? 512;
  }

  /** Resolves once the write is committed; rejects with the database's error when it is not. */
  submit(write: AggregateWrite): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ write, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        // setImmediate lets every write of the current turn of the event loop join the first batch.
        this.#idle = new Promise((done) => setImmediate(() => void this.#drain().finally(done)));
      }
    });
  }

  /** Resolves when everything submitted so far has been committed or failed. */
  flushed(): Promise<void> {
    return this.#idle;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        await this.#commit(batch);
      }
    } finally {
      this.#running = false;
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    try {
      await this.#transaction(batch.map((p) => p.write));
      for (const p of batch) p.resolve();
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
      } else {
        this.stats.retriedAlone += batch.length;
        for (const p of batch) {
          try {
            await this.#transaction([p.write]);
            p.resolve();
          } catch (e) {
            p.reject(e);
          }
        }
      }
    }
  }

  async #transaction(writes: AggregateWrite[]): Promise<void> {
    const conn = this.#db.connection;
    await conn.transactional((trx) => writeBatch(conn, trx, writes));
    this.stats.transactions++;
    this.stats.writes += writes.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, writes.length);
    this.emit("committed", writes.length);
  }
}
