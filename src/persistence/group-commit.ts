/** Group commit: writes that arrive together share one transaction; nobody is answered before it commits. */
import { EventEmitter } from "node:events";
import type { Database } from "./database.js";
import { writeBatch, type AggregateWrite, type FenceCheck } from "./commit-batch.js";
import { CommitOutcomeUnknown, askOutcome, settleCommit, type InDoubtCommit } from "./commit-outcome.js";
import type { OutboxRow } from "./entities.js";
import { SqliteWriteWorker, type WorkerTimings } from "./sqlite-write-worker.js";
import type { Logger } from "../log/index.js";
import { reportFailure } from "../supervision/index.js";
import { endSpan, groupCommitSpan } from "../tracing/index.js";

interface Pending {
  write: AggregateWrite;
  /** Its place among every write submitted (0, 1, 2 …): whether a {@link Settling} waits for it. */
  seq: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** A wait for the writes submitted before it ({@link GroupCommitWriter.settled}). */
interface Settling {
  /** The writes it waits for are those numbered below this. */
  before: number;
  /** How many of them are still unsettled. */
  left: number;
  resolve: () => void;
}

/** Figures of the writer, for metrics and the benchmark. */
export interface WriterStats {
  transactions: number;
  writes: number;
  largestBatch: number;
  retriedAlone: number;
  /** Published outbox rows deleted (by transactions of their own only when no write came along). */
  outboxRowsDeleted: number;
  /** Transactions that only deleted published rows (not in `transactions`). */
  deleteOnlyTransactions: number;
  /** Batches that waited for admission (the relay's backlog), and how long in all. */
  admissionWaits: number;
  admissionWaitMs: number;
  /** Turns of the event loop the drain let happen after {@link DRAIN_SLICE_MS} without one (writes kept arriving in microtasks). */
  drainYields: number;
}

/** Options of the group-commit writer. */
export interface GroupCommitOptions {
  /** Most writes in one transaction. */
  maxBatch?: number;
  /**
   * Asked before each transaction with writes; the writer waits while it returns a promise. Nerve
   * passes the outbox relay's `room`: commands are then accepted no faster than their events reach
   * JetStream, instead of piling up unpublished behind quick replies.
   */
  admission?: () => Promise<void> | undefined;
  /**
   * Run first in every transaction with writes when several instances share the database: fails it
   * when a write's partition has moved on (a newer lease epoch), so a former owner never commits.
   */
  fenceCheck?: FenceCheck;
  /**
   * On a SQLite file: `worker` commits in a worker thread with a connection of its own, one message per
   * transaction; `inline` the same engine and connection of its own on the main thread (no hop between
   * threads; the event loop waits out each transaction); `main` (the default here; the service's is
   * `worker`) on the main connection, through MikroORM.
   * PostgreSQL, an in-memory SQLite and fenced commits always take the main connection.
   */
  sqliteWriter?: "worker" | "inline" | "main";
  /** Where the write worker's deaths are reported (src/supervision); without it they are not logged. */
  logger?: Logger;
  /** Told each committed transaction's duration and writes (transactions that only delete are not told). */
  observe?: (seconds: number, writes: number) => void;
  /** Told the parts of each group commit the write worker answered (its hop, its transaction, its answer's way back). */
  observeWorker?: WorkerTimings;
  /** {@link DELETE_LINGER_MS} unless set; 0 deletes at once. */
  deleteLingerMs?: number;
  /** {@link OUTCOME_WAIT_MS} unless set: how long a PostgreSQL commit whose answer was lost is asked after. */
  outcomeWaitMs?: number;
}

/**
 * Group commits in flight at once through the write worker. With one, the main thread and the worker
 * took turns: the worker committed a batch while the main thread waited, then the main thread answered
 * it and prepared the next while the worker waited (at 256 commands in flight, a 27 ms cycle of about
 * 15 ms of main-thread work and 9 ms of commit). With two, the next batch is on its way while one commits.
 * The worker commits in the order sent, so the outbox's seqs follow it; an aggregate never has two
 * writes in flight (its actor awaits each commit), so their order cannot cross.
 */
export const WORKER_PIPELINE = 2;

/**
 * How long released outbox rows wait for a write to carry their deletion before they get a transaction
 * of their own. Without it, a command sent just after the one before was answered found that one's
 * delete-only transaction (its own fsync) on the connection, and waited for it: a quarter of a lone
 * command's time. Whoever waits for the deletion ({@link GroupCommitWriter.released}) cuts it short.
 */
export const DELETE_LINGER_MS = 20;

/**
 * Longest the drain goes on committing without a turn of the event loop. Writes that arrive in microtasks —
 * a caller that submits as soon as its last write committed, when each commit settles in a microtask (the
 * inline engine) — would otherwise keep it from ever turning: no I/O, no timer, no reply flushed until they
 * stop. Past this the drain lets one turn happen before its next transaction. Commands arrive as I/O, so
 * under their load the loop turns long before it.
 */
export const DRAIN_SLICE_MS = 50;

/**
 * How long the writer asks after a PostgreSQL commit whose answer never came (the connection cut during
 * COMMIT, a failover) before it fails the batch's writes with {@link CommitOutcomeUnknown}: long enough for
 * a restart or a failover's first seconds, short of a client's patience. The writes queued behind it wait
 * meanwhile (one transaction at a time on the main connection).
 */
export const OUTCOME_WAIT_MS = 5000;

/**
 * Pause before retrying a delete-only transaction that failed, doubled after each failure in a row up to
 * {@link DELETE_RETRY_MAX_MS}: a database away for minutes was asked (and the failure logged) every 220 ms.
 * Writes do not wait for it: they carry the deletes with them.
 */
const DELETE_RETRY_MS = 200;
const DELETE_RETRY_MAX_MS = 5_000;

class DeletesFailed extends Error {
  constructor(cause: unknown) {
    super("deleting published outbox rows failed", { cause });
  }
}

/** Published outbox rows waiting for a transaction, and who waits for their deletion. */
interface DeleteSet {
  seqs: number[];
  waiters: (() => void)[];
}

/**
 * Collects writes while a transaction is in flight and commits them together next (like PostgreSQL's
 * commit_delay, with the commit itself as the window). A batch that fails is retried write by write,
 * so one bad write (a taken e-mail, a stale snapshot) fails alone.
 *
 * It also deletes the outbox rows the relay has published (`release`): they ride along with the next
 * transaction, so under load the relay costs the database no transaction, no fsync and no turn on the
 * connection of its own. Emits `committed` with the transaction's new outbox rows after each commit, and
 * `error` when a transaction that only deletes fails (it is retried shortly).
 *
 * On PostgreSQL a failure after the COMMIT went out (its answer lost with the connection) may hide a
 * commit: the writer then asks the database (commit-outcome.ts) and answers the batch as what it was. One
 * whose outcome it cannot learn within {@link OUTCOME_WAIT_MS} fails its writes (CommitOutcomeUnknown) and
 * asks again before each later batch of writes, failing it the same way until it knows — a committed one's
 * rows are then handed on first — so the outbox's rows still reach the relay in commit order, and nothing
 * of an aggregate goes out before what came before it.
 */
export class GroupCommitWriter extends EventEmitter<{ committed: [rows: OutboxRow[]]; error: [err: unknown] }> {
  readonly #db: Database;
  readonly #maxBatch: number;
  readonly #admission: (() => Promise<void> | undefined) | undefined;
  readonly #fenceCheck: FenceCheck | undefined;
  readonly #observe: ((seconds: number, writes: number) => void) | undefined;
  /** PostgreSQL: a failure after COMMIT may hide a commit. */
  readonly #asksOutcome: boolean;
  readonly #outcomeWaitMs: number;
  /** A commit whose outcome is still unknown: no write commits until it is known. */
  #doubt: InDoubtCommit | undefined;
  /** The SQLite write worker, when this writer commits through one. */
  readonly sqliteWorker: SqliteWriteWorker | undefined;
  #queue: Pending[] = [];
  /** Writes submitted so far; the next one's seq. */
  #submitted = 0;
  /** Writes submitted and not yet committed or failed. */
  #unsettled = 0;
  readonly #settlings: Settling[] = [];
  #deletes: DeleteSet = { seqs: [], waiters: [] };
  /**
   * The deletes the transactions in flight carry (at most `pipeline`). Here and in #drain, arrays rather
   * than Sets: a small Set that things come and go from rebuilds its table every few operations, and
   * the obsolete tables keep what they held alive through scavenges (see ChurnTable).
   */
  readonly #deleting: DeleteSet[] = [];
  #running = false;
  /** Transactions in flight at most: {@link WORKER_PIPELINE} through the write worker, 1 on the main connection. */
  readonly #pipeline: number;
  /** Set while the drain waits for a transaction in flight with nothing queued: a submit wakes it. */
  #wake: (() => void) | undefined;
  #idle: Promise<void> = Promise.resolve();
  readonly #lingerMs: number;
  /** Set while released rows wait for a write ({@link DELETE_LINGER_MS}): starts the transaction now. */
  #cutLinger: (() => void) | undefined;
  /** Set while a failed transaction waits {@link DELETE_RETRY_MS} to be retried. */
  #retryTimer: NodeJS.Timeout | undefined;
  /** Closed: no retry of failed deletions is scheduled any more (it would run against a closed database). */
  #closed = false;
  readonly stats: WriterStats = { transactions: 0, writes: 0, largestBatch: 0, retriedAlone: 0, outboxRowsDeleted: 0, deleteOnlyTransactions: 0, admissionWaits: 0, admissionWaitMs: 0, drainYields: 0 };

  constructor(db: Database, opts: GroupCommitOptions = {}) {
    super();
    this.#db = db;
    this.#maxBatch = opts.maxBatch ?? 512;
    this.#admission = opts.admission;
    this.#fenceCheck = opts.fenceCheck;
    this.#observe = opts.observe;
    this.#lingerMs = opts.deleteLingerMs ?? DELETE_LINGER_MS;
    this.#asksOutcome = db.dialect === "postgresql";
    this.#outcomeWaitMs = opts.outcomeWaitMs ?? OUTCOME_WAIT_MS;
    const logger = opts.logger;
    this.sqliteWorker =
      db.sqliteFile && (opts.sqliteWriter === "worker" || opts.sqliteWriter === "inline") && !opts.fenceCheck
        ? new SqliteWriteWorker(
            db,
            (err) => logger && reportFailure(logger, "sqlite write worker", err, "the SQLite write worker stopped; its batch failed unless it had committed, the next one restarts it"),
            opts.observeWorker,
            opts.sqliteWriter === "inline" ? "inline" : "thread",
          )
        : undefined;
    // One connection runs one transaction at a time: only the worker's queue can take a second.
    this.#pipeline = this.sqliteWorker ? WORKER_PIPELINE : 1;
  }

  /** Resolves once the write is committed; rejects with the database's error when it is not. */
  submit(write: AggregateWrite): Promise<void> {
    const seq = this.#submitted++;
    this.#unsettled++;
    return new Promise((resolve, reject) => {
      this.#queue.push({ write, seq, resolve, reject });
      if (this.#cutLinger) this.#cutLinger();
      else if (this.#wake) this.#wake();
      else this.#schedule();
    });
  }

  /** Deletes these published outbox rows with the next transaction. */
  release(seqs: readonly number[]): void {
    if (seqs.length === 0) return;
    for (const s of seqs) this.#deletes.seqs.push(s);
    this.#schedule();
  }

  /** Resolves once every row released so far is deleted (a failed delete is retried with the next transaction). */
  released(): Promise<void> {
    // Those in flight too: one that fails puts its rows (and waiters) back in front of the next transaction.
    const targets = [...this.#deleting];
    if (this.#deletes.seqs.length > 0) targets.push(this.#deletes);
    if (targets.length === 0) return Promise.resolve();
    this.#cutLinger?.();
    return Promise.all(targets.map((t) => new Promise<void>((resolve) => t.waiters.push(resolve)))).then(() => undefined);
  }

  /**
   * Resolves when everything submitted and released so far has been committed or failed, and nothing
   * more is queued: under sustained load (writes of other aggregates refilling the queue) that may be
   * never. To wait for what came before a moment, {@link settled}.
   */
  flushed(): Promise<void> {
    return this.#idle;
  }

  /**
   * Resolves once every write submitted so far has been committed or failed; writes submitted after are
   * not waited for. A partition's hand-off drains with it: flushed() waits for the whole writer to be
   * idle, which under load (the commands of the partitions kept refilling the queue) it never is.
   */
  settled(): Promise<void> {
    if (this.#unsettled === 0) return Promise.resolve();
    return new Promise((resolve) => this.#settlings.push({ before: this.#submitted, left: this.#unsettled, resolve }));
  }

  /** Waits for everything submitted so far, then ends the write worker (if any); submit no more after it. */
  async close(): Promise<void> {
    await this.flushed();
    // A retry of failed deletions armed before the close would run against a closed database.
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.sqliteWorker?.close();
  }

  #schedule(): void {
    if (this.#running) return;
    this.#running = true;
    this.#idle = new Promise((done) => {
      const go = () => {
        this.#cutLinger = undefined;
        void this.#drain().finally(() => {
          // Rows released during the last transaction, with no write left to carry them: they linger anew,
          // and whoever awaits flushed() now waits for them too.
          if (this.#deletes.seqs.length > 0 && this.#queue.length === 0 && !this.#retryTimer) {
            this.#schedule();
            void this.#idle.then(done);
          } else done();
        });
      };
      if (this.#queue.length > 0 || this.#lingerMs <= 0) {
        // setImmediate lets every write of the current turn of the event loop join the first batch.
        setImmediate(go);
        return;
      }
      const timer = setTimeout(go, this.#lingerMs);
      this.#cutLinger = () => {
        this.#cutLinger = undefined;
        clearTimeout(timer);
        setImmediate(go);
      };
    });
  }

  /** Delete-only transactions failed in a row (the back-off's exponent); 0 after a drain that ends well. */
  #failuresInARow = 0;

  /** When the event loop last turned during a drain (a setImmediate armed by the drain ran), and whether one is armed. */
  #turnedAt = 0;
  #turnArmed = false;
  readonly #turned = (): void => {
    this.#turnArmed = false;
    this.#turnedAt = performance.now();
  };

  async #drain(): Promise<void> {
    const inflight: Promise<void>[] = [];
    // The drain starts in a turn of its own (setImmediate or the linger's timer).
    this.#turnedAt = performance.now();
    try {
      // No write came along during the linger: the released rows get a transaction of their own.
      if (this.#queue.length === 0 && this.#deletes.seqs.length > 0) await this.#commit([]);
      while (this.#queue.length > 0 || inflight.length > 0) {
        if (this.#queue.length === 0 || inflight.length >= this.#pipeline) {
          await this.#nextTurn(inflight);
          continue;
        }
        // Whether the loop turns between transactions: a setImmediate armed here runs only if it does.
        if (!this.#turnArmed) {
          this.#turnArmed = true;
          setImmediate(this.#turned);
        }
        if (performance.now() - this.#turnedAt > DRAIN_SLICE_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          this.stats.drainYields++;
          continue;
        }
        const wait = this.#admission?.();
        if (wait) {
          const started = performance.now();
          await wait;
          this.stats.admissionWaits++;
          this.stats.admissionWaitMs += performance.now() - started;
        }
        const batch = this.#queue.splice(0, this.#maxBatch);
        const committing: Promise<void> = this.#commit(batch).finally(() => remove(inflight, committing));
        // Its failure is taken by #nextTurn's race; until then (an admission wait) it must not count as unhandled.
        committing.catch(() => undefined);
        inflight.push(committing);
      }
      this.#failuresInARow = 0;
    } catch (err) {
      // Whatever else is in flight settles before the drain ends: no more than `pipeline` at a time.
      await Promise.allSettled(inflight);
      // Nothing awaits this loop: a failure is reported ("error") and the queue retried, never thrown.
      // A write's own failure rejects that write in #commit; only deletions and bugs arrive here.
      if (this.listenerCount("error") > 0) this.emit("error", err instanceof DeletesFailed ? err.cause : err);
      if (!this.#closed) {
        const delay = Math.min(DELETE_RETRY_MAX_MS, DELETE_RETRY_MS * 2 ** this.#failuresInARow++);
        this.#retryTimer ??= setTimeout(() => {
          this.#retryTimer = undefined;
          if (!this.#closed) this.#schedule();
        }, delay).unref();
      }
    } finally {
      this.#running = false;
    }
  }

  /**
   * Waits until a transaction in flight settles (rejecting with its failure) or, while there is room for
   * another, until a write arrives — then for the end of that turn of the event loop, so the writes
   * submitted with it share its batch.
   */
  async #nextTurn(inflight: readonly Promise<void>[]): Promise<void> {
    const settled: Promise<unknown>[] = [...inflight];
    if (inflight.length < this.#pipeline) {
      settled.push(
        new Promise<void>((resolve) => {
          this.#wake = () => {
            this.#wake = undefined;
            setImmediate(resolve);
          };
        }),
      );
    }
    try {
      await Promise.race(settled);
    } finally {
      this.#wake = undefined;
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    try {
      if (batch.length > 0 && this.#doubt && !(await this.#settleDoubt())) {
        const err = new CommitOutcomeUnknown("an earlier commit's outcome is not known yet (the database is out of reach); retry");
        for (const p of batch) p.reject(err);
        return;
      }
      await this.#commitOrRetry(batch);
    } finally {
      for (const p of batch) this.#settle(p.seq);
    }
  }

  // Every write unsettled when a Settling was made was submitted before it: it counts them down.
  #settle(seq: number): void {
    this.#unsettled--;
    for (let i = this.#settlings.length - 1; i >= 0; i--) {
      const s = this.#settlings[i]!;
      if (seq < s.before && --s.left === 0) {
        this.#settlings.splice(i, 1);
        s.resolve();
      }
    }
  }

  async #commitOrRetry(batch: Pending[]): Promise<void> {
    try {
      await this.#transaction(writesOf(batch));
      for (const p of batch) p.resolve();
    } catch (err) {
      if (batch.length === 0) {
        // A failed delete-only transaction: the rows stay released; they go with the next write, or a retry.
        throw new DeletesFailed(err);
      } else if (batch.length === 1 || err instanceof CommitOutcomeUnknown) {
        // One that may have committed is not tried again write by write: each would be a second commit.
        for (const p of batch) p.reject(err);
      } else {
        this.stats.retriedAlone += batch.length;
        for (const p of batch) {
          // One of them left in doubt: the rest wait for its outcome like any later write (refused now).
          if (this.#doubt) {
            p.reject(new CommitOutcomeUnknown("an earlier commit's outcome is not known yet (the database is out of reach); retry"));
            continue;
          }
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

  /**
   * Asks once more after the commit left in doubt; true once its outcome is known (a committed one's
   * rows handed on now, before any later commit's), false while it is not.
   */
  async #settleDoubt(): Promise<boolean> {
    const doubt = this.#doubt!;
    const outcome = await askOutcome(this.#db, doubt).catch(() => undefined);
    if (!outcome) return false;
    this.#doubt = undefined;
    if (outcome.committed && outcome.pending.length > 0) this.emit("committed", outcome.pending);
    return true;
  }

  async #transaction(writes: AggregateWrite[]): Promise<void> {
    const conn = this.#db.connection;
    const deleting = this.#deletes.seqs.length > 0 ? this.#deletes : undefined;
    if (deleting) {
      this.#deletes = { seqs: [], waiters: [] };
      this.#deleting.push(deleting);
    }
    const span = writes.length > 0 ? groupCommitSpan(writes) : undefined;
    const started = performance.now();
    // Set once the transaction's writes are done: a failure after it may come after the COMMIT landed.
    const sent: { commit?: InDoubtCommit } = {};
    let rows: OutboxRow[];
    try {
      rows = this.sqliteWorker
        ? await this.sqliteWorker.commit(writes, deleting?.seqs)
        : await conn.transactional(async (trx) => {
            const transaction: { xid?: string } | undefined = this.#asksOutcome && writes.length > 0 ? {} : undefined;
            const out = await writeBatch(conn, trx, writes, deleting?.seqs, this.#fenceCheck, transaction);
            if (transaction?.xid !== undefined) sent.commit = { xid: transaction.xid, writes, rows: out };
            return out;
          });
    } catch (err) {
      const outcome = sent.commit && (await settleCommit(this.#db, sent.commit, this.#outcomeWaitMs));
      if (outcome?.committed) {
        rows = outcome.pending;
      } else {
        endSpan(span, err);
        if (deleting) {
          remove(this.#deleting, deleting);
          // Back in front of whatever was released meanwhile, waiters and all.
          this.#deletes = { seqs: [...deleting.seqs, ...this.#deletes.seqs], waiters: [...deleting.waiters, ...this.#deletes.waiters] };
        }
        if (sent.commit && !outcome) {
          this.#doubt = sent.commit;
          throw new CommitOutcomeUnknown("the commit's answer was lost and the database could not say whether it committed; retry", { cause: err });
        }
        throw err;
      }
    }
    if (deleting) remove(this.#deleting, deleting);
    if (writes.length > 0) this.#observe?.((performance.now() - started) / 1000, writes.length);
    endSpan(span);
    if (writes.length === 0) this.stats.deleteOnlyTransactions++;
    else this.stats.transactions++;
    this.stats.writes += writes.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, writes.length);
    if (deleting) {
      this.stats.outboxRowsDeleted += deleting.seqs.length;
      for (const w of deleting.waiters) w();
    }
    this.emit("committed", rows);
  }
}

/**
 * A batch's writes, in an array built by push: always of one elements kind. `Array.prototype.map` gave some
 * batches packed arrays and others holey ones, and every function the writes pass through (their encoding,
 * the engine's statements) was deoptimized and compiled again each time the other kind came by, a lone
 * command after a load above all (stop 57, `--trace-deopt`: "wrong map").
 */
export function writesOf(batch: readonly { write: AggregateWrite }[]): AggregateWrite[] {
  const writes: AggregateWrite[] = [];
  for (const p of batch) writes.push(p.write);
  return writes;
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}
