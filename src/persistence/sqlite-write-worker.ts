/**
 * The SQLite write worker, from the main thread: a group commit is one message to a worker thread
 * that owns a write connection (sqlite-write-thread.ts) and one reply, instead of a trip through
 * libuv's thread pool and back to the event loop for every statement of the transaction. Inline
 * (`NERVE_SQLITE_WRITER=inline`) the same engine runs on the main thread, behind the same messages.
 */
import { EventEmitter } from "node:events";
import { Worker } from "node:worker_threads";
import { encodeWrites, outboxRows, type AggregateWrite } from "./commit-batch.js";
import { WAL_SIZE_LIMIT, type Database } from "./database.js";
import type { OutboxRow } from "./entities.js";
import { StaleWriteError, type EncodedWrite } from "./batch-statements.js";
import { BatchBeforeFailed, type BatchLink, type ConsumerBatch, type ConsumerBatchWriter } from "./consumer-batch.js";
import { ChurnTable } from "../support/churn-table.js";
import { monotonicMs } from "../support/monotonic.js";
import { startWriteEngine, type EngineMessage, type WriteEngine } from "./sqlite-write-engine.js";
import { withWorkerFlags, type WorkerHeap } from "./worker-heap.js";

/** What the worker thread is started with. */
export interface WorkerSetup {
  path: string;
  synchronous: "FULL" | "NORMAL";
  busyTimeoutMs: number;
  /** journal_size_limit: what a restarted WAL file is cut back to. */
  walSizeLimit: number;
}

/** One group commit, or one consumer's batch, sent to the worker. */
export type WorkerRequest =
  | {
      id: number;
      writes: EncodedWrite[];
      published: readonly number[];
      /** Exit with the transaction written but not committed, as a crash would (tests of the failure path). */
      exitBeforeCommit?: true;
    }
  | {
      id: number;
      consumerBatch: ConsumerBatch;
      /** The request this batch follows on its reader's link, still queued when this one was sent: run this one only if that one committed. */
      after?: number;
      /** As a group commit's (tests of the failure path). */
      exitBeforeCommit?: true;
    };

/**
 * The worker's answer: a group commit's outbox seq of each event in batch order, a consumer batch's
 * "new, so applied" by event, or why the transaction failed (rolled back).
 */
export type WorkerReply = ({ id: number; seqs: number[] } | { id: number; handled: boolean[] } | { id: number; error: { name: string; message: string; code: string | undefined; stale: boolean } }) & {
  /** When the request's transaction started and ended on the worker's thread ({@link monotonicMs}). */
  ran?: [number, number];
};

/**
 * Told, for each group commit with writes the worker answered, its three parts in seconds: `wait` from the main
 * thread's post until the worker's thread started its transaction (the hop to a thread that may have to
 * be woken and get a core, and a transaction still running before it), `run` the transaction itself (its
 * statements and the fsync), `answer` from its end until the main thread took the answer.
 */
export type WorkerTimings = (wait: number, run: number, answer: number) => void;

/** Transactions of the worker that several requests shared, and the requests in them. */
export interface SharedTransactionStats {
  transactions: number;
  requests: number;
  /** Group commits written as one statement (one-statement.ts), inside a shared transaction or as their own. */
  oneStatement: number;
}

// The worker thread's own V8 heap (outside the main thread's heap figures: process RSS counts it), and its young generation.
export { WORKER_SEMI_SPACE_MB, processSemiSpaceMb, withWorkerFlags, type WorkerHeap } from "./worker-heap.js";

/** The write worker stopped (crashed, exited) with this batch in flight, which did not commit. Retrying can help: it restarts. */
export class WriteWorkerStopped extends Error {
  override readonly name = "WriteWorkerStopped";
}

/** A database error from the worker, as the driver named it (`code` like SQLITE_CONSTRAINT_UNIQUE, the message unchanged). */
export class SqliteWriteError extends Error {
  constructor(
    override readonly name: string,
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

type InFlight =
  | { kind: "commit"; writes: AggregateWrite[]; resolve: (rows: OutboxRow[]) => void; reject: (err: unknown) => void; sentMs: number }
  | { kind: "consumer"; resolve: (handled: boolean[]) => void; reject: (err: unknown) => void };

// The thread runs TypeScript where the service does (under tsx): a worker does not inherit the loader hooks.
const THREAD_URL = new URL(import.meta.url.endsWith(".ts") ? "./sqlite-write-thread.ts" : "./sqlite-write-thread.js", import.meta.url);
const BOOT = `const { workerData } = require("node:worker_threads");
(workerData.entry.endsWith(".ts") ? import("tsx/esm/api").then((t) => t.register()) : Promise.resolve()).then(() => import(workerData.entry));`;

/**
 * The write engine on the main thread, with a worker's face (messages in and out, `exit` when it ends):
 * no hop between threads and no copy of a request, but each transaction, its fsync included, holds the
 * event loop. A group commit runs as soon as the code that sent it is done (a microtask): the writer's batch
 * already holds a whole turn's writes, and waiting for the next turn's end as well made every command pass
 * through the event loop once more (at 6,000 commands/s the turn takes milliseconds: in `npm run
 * bench:lone` the open loop's p50 at that rate was 9.0–11.1 ms that way, 6.8–8.0 this way). Consumer
 * batches alone wait for the turn's end, so that they share the transaction of a group commit that comes
 * with it, as what a busy thread finds waiting does. It never waits for the write lock inside SQLite
 * (EngineHost.yielding): a lock another
 * connection holds is asked for again on a timer, and each transaction after a drain's first waits a
 * turn, so that what its answers set going can write on the main connection first.
 */
class InlineEngine extends EventEmitter {
  #engine: WriteEngine | undefined;
  #ended = false;

  constructor(setup: WorkerSetup) {
    super();
    try {
      this.#engine = startWriteEngine(setup, {
        reply: (m) => {
          if (!this.#ended) this.emit("message", m);
        },
        pull: () => undefined,
        defer: (drain, soon) => (soon ? queueMicrotask(drain) : setImmediate(drain)),
        yielding: {
          sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
          between: () => new Promise((resolve) => setImmediate(resolve)),
        },
        closed: () => this.#end(0),
        crash: (err) => {
          this.#engine?.abort();
          this.#end(1, err);
        },
      });
    } catch (err) {
      // As a thread that fails to open its connection: the error, then the exit, once the caller listens.
      setImmediate(() => this.#end(1, err));
    }
  }

  ref(): void {}

  unref(): void {}

  postMessage(m: EngineMessage, _transfer?: ArrayBuffer[]): void {
    if (!this.#ended) this.#engine?.take(m);
  }

  #end(code: number, err?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    setImmediate(() => {
      if (err !== undefined) this.emit("error", err);
      this.emit("exit", code);
    });
  }
}

/**
 * A worker thread that commits group-commit batches, and the batches of projections that only write, on
 * its own connection to a SQLite file, one transaction at a time in the order sent; restarted after it dies.
 * With `where: "inline"` the same engine runs on the main thread ({@link InlineEngine}).
 */
export class SqliteWriteWorker implements ConsumerBatchWriter {
  readonly #db: Database;
  readonly #setup: WorkerSetup;
  readonly #onFailure: (err: Error) => void;
  readonly #timings: WorkerTimings | undefined;
  #worker: Worker | InlineEngine | undefined;
  /** By request id; not a Map (see ChurnTable): a request comes and goes with every group commit. */
  readonly #inflight = new ChurnTable<InFlight>();
  #nextId = 1;
  #closed = false;
  #exitBeforeCommit = false;
  /** Times the worker died and was started again. */
  restarts = 0;
  #statsWaiters: ((s: SharedTransactionStats) => void)[] = [];
  #heapWaiters: ((h: WorkerHeap | undefined) => void)[] = [];
  /** Main-connection transactions running ({@link exclusive}): while any does, requests are held, not sent. */
  #exclusive = 0;
  /** Requests held meanwhile, in the order they came; sent, in that order, when the last one ends. */
  #held: (() => void)[] = [];
  /** Who waits for nothing to be in flight. */
  #drainWaiters: (() => void)[] = [];
  /** Exclusive runs that came while requests were held: they wait for those to be sent first. */
  #turnWaiters: (() => void)[] = [];

  /** Where the engine runs: a thread of its own, or the main thread (`NERVE_SQLITE_WRITER=inline`). */
  readonly where: "thread" | "inline";

  get #isInline(): boolean {
    return this.where === "inline";
  }

  /** `onFailure` hears of every death of the worker (its batches are failed or settled already); `timings` of each group commit's parts. */
  constructor(db: Database, onFailure: (err: Error) => void, timings?: WorkerTimings, where: "thread" | "inline" = "thread") {
    if (!db.sqliteFile) throw new Error("the SQLite write worker needs a SQLite file");
    this.#db = db;
    this.where = where;
    this.#setup = { ...db.sqliteFile, walSizeLimit: WAL_SIZE_LIMIT };
    this.#onFailure = onFailure;
    this.#timings = timings;
    this.#start();
  }

  /** Commits `writes` and deletes the `published` outbox rows in one transaction; resolves with the new outbox rows. */
  commit(writes: AggregateWrite[], published: readonly number[] = []): Promise<OutboxRow[]> {
    const encoded = encodeWrites(writes);
    // Inline, nothing crosses to another thread: the bodies are read where they are.
    const transfer = this.#isInline ? [] : packBodies(encoded);
    return new Promise((resolve, reject) =>
      this.#send({ kind: "commit", writes, resolve, reject, sentMs: this.#timings ? monotonicMs() : 0 }, (id) => ({ id, writes: encoded, published }), transfer),
    );
  }

  /**
   * Runs a projection's batch in one transaction, queued behind the group commits sent before it; resolves
   * with, by event, whether it was new. A batch in flight when the worker dies is failed: it is
   * redelivered, and whatever of it had committed is then a duplicate. With a `link`, it is sent once the
   * batch before it on the link is queued (not committed), and the worker runs it only if that one
   * commits: else it fails with {@link BatchBeforeFailed}, as it does at once when that one already failed.
   */
  async applyConsumerBatch(batch: ConsumerBatch, link?: BatchLink): Promise<boolean[]> {
    const before = link?.before;
    if (before) await before.queued;
    if (before?.state === "failed") {
      link!.failed();
      throw new BatchBeforeFailed("the batch before this one on its reader did not commit");
    }
    // Still queued at the worker: the worker checks its outcome before running this one.
    const after = before?.id;
    return new Promise((resolve, reject) =>
      this.#send(
        {
          kind: "consumer",
          resolve: (handled) => {
            link?.committed();
            resolve(handled);
          },
          reject: (err) => {
            link?.failed();
            reject(err);
          },
        },
        (id) => {
          link?.queue(id);
          return after === undefined ? { id, consumerBatch: batch } : { id, consumerBatch: batch, after };
        },
      ),
    );
  }

  /**
   * Runs `fn`, a write transaction on the main connection, once nothing is in flight here, and holds the
   * requests sent meanwhile until it ends (then sends them, in order). The main connection runs on the main
   * thread, and SQLite waits for a lock another connection holds by sleeping in its busy handler (1, 2, 5,
   * 10 … ms) — the event loop with it: with group commits back to back, a projection's transaction took 1.9 ms
   * at the median and 6–10 at p99, and the event loop stalled up to 12–13 ms. Asking again on timers instead
   * starved it (p99 0.5–0.6 s: the worker took the lock back first). Here the main connection finds the lock
   * free (but for the checkpointer's rare RESTART), and the worker waits, holding nothing, for no longer than
   * the transaction. `fn` must not wait for this worker (what it sends is held until it ends). One that comes
   * while requests are held waits until they have been sent: overlapping runs never starve the worker.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#held.length > 0) await new Promise<void>((resolve) => this.#turnWaiters.push(resolve));
    this.#exclusive++;
    try {
      if (this.#inflight.size > 0) await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
      return await fn();
    } finally {
      if (--this.#exclusive === 0) {
        for (const send of this.#held.splice(0)) send();
        for (const w of this.#turnWaiters.splice(0)) w();
      }
    }
  }

  // Nothing is in flight: whoever waits for that ({@link exclusive}) goes on.
  #drained(): void {
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  // Sends one request (made for its id) to the worker, started if need be; `f` settles when it answers or dies.
  #send(f: InFlight, request: (id: number) => WorkerRequest, transfer: ArrayBuffer[] = []): void {
    if (this.#closed) return f.reject(new WriteWorkerStopped("the SQLite write worker is closed"));
    if (this.#exclusive > 0) return void this.#held.push(() => this.#send(f, request, transfer));
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    this.#inflight.set(id, f);
    if (this.#inflight.size === 1) worker.ref();
    const req = request(id);
    if (this.#exitBeforeCommit) {
      this.#exitBeforeCommit = false;
      req.exitBeforeCommit = true;
    }
    worker.postMessage(req, transfer);
  }

  /** How many of the worker's transactions several requests shared, how many requests those held, and how many group commits were one statement (since it last started). */
  sharedTransactions(): Promise<SharedTransactionStats> {
    const worker = this.#worker ?? this.#start();
    worker.ref();
    return new Promise((resolve) => {
      this.#statsWaiters.push(resolve);
      worker.postMessage({ stats: true });
    });
  }

  /** The worker thread's V8 heap; undefined while no worker runs (a scrape does not start one). */
  heap(): Promise<WorkerHeap | undefined> {
    const worker = this.#worker;
    // Inline, the engine's heap is the main thread's.
    if (!worker || this.#closed || this.#isInline) return Promise.resolve(undefined);
    worker.ref();
    return new Promise((resolve) => {
      this.#heapWaiters.push(resolve);
      worker.postMessage({ heap: true });
    });
  }

  /** Ends the worker once it has answered what it was sent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const worker = this.#worker;
    if (!worker) return;
    const exited = new Promise((r) => worker.once("exit", r));
    worker.ref();
    worker.postMessage({ close: true });
    await exited;
  }

  /**
   * Makes the worker exit in the middle of the next transaction (the next request sent: a group commit or
   * a consumer batch), its statements run but not committed,
   * as a crash would — for tests of the failure path (the thread calls `process.exit` between its last
   * statement and `commit`).
   */
  exitBeforeNextCommit(): void {
    this.#exitBeforeCommit = true;
  }

  #start(): Worker | InlineEngine {
    const worker = this.#isInline ? new InlineEngine(this.#setup) : withWorkerFlags(() => new Worker(BOOT, { eval: true, workerData: { ...this.#setup, entry: THREAD_URL.href }, execArgv: [] }));
    this.#worker = worker;
    let failure: Error | undefined;
    worker.unref();
    worker.on("message", (reply: WorkerReply | { stats: SharedTransactionStats } | { heap: WorkerHeap }) => {
      if ("stats" in reply) {
        if (this.#inflight.size === 0) worker.unref();
        for (const w of this.#statsWaiters.splice(0)) w(reply.stats);
      } else if ("heap" in reply) {
        if (this.#inflight.size === 0) worker.unref();
        for (const w of this.#heapWaiters.splice(0)) w(reply.heap);
      } else this.#answer(reply);
    });
    worker.on("error", (err) => (failure = err));
    worker.on("exit", (code) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const w of this.#heapWaiters.splice(0)) w(undefined);
      if (this.#closed && this.#inflight.size === 0) return;
      const cause = failure ?? new Error(`exited with code ${code}`);
      const err = new WriteWorkerStopped(`the SQLite write worker stopped: ${cause.message}`, { cause });
      this.restarts++;
      for (const w of this.#statsWaiters.splice(0)) w({ transactions: 0, requests: 0, oneStatement: 0 });
      const lost = this.#inflight.values();
      this.#inflight.clear();
      this.#drained();
      for (const f of lost) void this.#settle(f, err);
      this.#onFailure(err);
    });
    return worker;
  }

  #answer(reply: WorkerReply): void {
    const f = this.#inflight.get(reply.id);
    if (!f) return;
    this.#inflight.delete(reply.id);
    if (this.#inflight.size === 0) this.#worker?.unref();
    try {
      this.#settleAnswer(f, reply);
    } finally {
      // After the request's own settling: its continuation goes first, then what waited for the worker to be idle.
      if (this.#inflight.size === 0) this.#drained();
    }
  }

  #settleAnswer(f: InFlight, reply: WorkerReply): void {
    // As nerve_group_commit_seconds: group commits with writes (one that only deletes published rows is not told).
    if (f.kind === "commit" && f.writes.length > 0 && reply.ran && this.#timings) {
      const [start, end] = reply.ran;
      const now = monotonicMs();
      this.#timings(Math.max(0, start - f.sentMs) / 1000, Math.max(0, end - start) / 1000, Math.max(0, now - end) / 1000);
    }
    if ("error" in reply) {
      if (reply.error.stale) f.reject(new StaleWriteError(reply.error.message));
      else if (reply.error.name === "BatchBeforeFailed") f.reject(new BatchBeforeFailed(reply.error.message));
      else f.reject(new SqliteWriteError(reply.error.name, reply.error.message, reply.error.code));
    } else if (f.kind === "consumer" && "handled" in reply) f.resolve(reply.handled);
    else if (f.kind === "commit" && "seqs" in reply) f.resolve(outboxRows(f.writes, reply.seqs));
    else f.reject(new Error("the SQLite write worker answered a different kind of request"));
  }

  /**
   * A group commit whose worker died: its transaction either committed before the death or rolled back with
   * the connection. The main connection tells which (the batch commits whole or not at all), so a
   * committed batch is answered as committed — its rows handed to the relay — and nothing is lost.
   */
  async #settle(f: InFlight, err: WriteWorkerStopped): Promise<void> {
    // A consumer batch is redelivered whole: what of it had committed is then a duplicate.
    if (f.kind === "consumer") return f.reject(err);
    try {
      const seqs = await committedSeqs(this.#db, f.writes);
      if (seqs) f.resolve(outboxRows(f.writes, seqs));
      else f.reject(err);
    } catch {
      f.reject(err);
    }
  }
}

/** Copies the batch's event bodies into one buffer that moves to the worker without a copy; returns it as the transfer list. */
function packBodies(writes: EncodedWrite[]): ArrayBuffer[] {
  let total = 0;
  for (const w of writes) for (const e of w.events) total += e.body.byteLength;
  if (total === 0) return [];
  // Not Buffer.allocUnsafe: a small one is a slice of Node's shared pool, which must not be transferred.
  const packed = new Uint8Array(total);
  let at = 0;
  for (const w of writes) {
    for (const e of w.events) {
      packed.set(e.body, at);
      e.body = packed.subarray(at, at + e.body.byteLength);
      at += e.body.byteLength;
    }
  }
  return [packed.buffer];
}

/** The outbox seqs of a batch's events when the batch committed, else undefined; read on the main connection. */
async function committedSeqs(db: Database, writes: AggregateWrite[]): Promise<number[] | undefined> {
  const ids = writes.flatMap((w) => w.events.map((e) => e.event_id));
  if (ids.length === 0) {
    // No events: only an idempotency key says whether it committed.
    const keyed = writes.find((w) => w.idempotency);
    if (!keyed) return undefined;
    const row = await db.execute("select 1 as x from nerve_idempotency where aggregate_type = ? and aggregate_id = ? and key = ?", [keyed.aggregateType, keyed.aggregateId, keyed.idempotency!.key], "get");
    return row ? [] : undefined;
  }
  const seqOf = new Map<string, number>();
  for (let i = 0; i < ids.length; i += 500) {
    const part = ids.slice(i, i + 500);
    const rows = await db.execute<{ seq: number; event_id: string }[]>(`select seq, event_id from nerve_outbox where event_id in (${part.map(() => "?").join(",")})`, part, "all");
    for (const r of rows) seqOf.set(r.event_id, Number(r.seq));
  }
  if (seqOf.size === 0) return undefined;
  return ids.map((id) => seqOf.get(id)!);
}
