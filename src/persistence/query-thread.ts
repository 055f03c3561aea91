/**
 * The read models' queries on a thread of their own. better-sqlite3 runs a statement on the calling thread,
 * and the read connection's statements ran on the main thread: cheap for the command path's point reads
 * (a snapshot, an idempotency key), but a query another service sends can be long — SearchCatalog ranks
 * every course that matches (50–150 ms over 50,000 courses for common words or two-letter prefixes; a one-letter word is matched whole since 869472b), and
 * CourseStats reads every learner of a course — and meanwhile the event loop, every reply, commit and
 * gateway frame stood still. Here a read-only connection on a worker thread runs them one after another;
 * the main thread posts the statement and awaits the rows (a hop there and back, some 0.1–0.2 ms here).
 */
import { Worker } from "node:worker_threads";
import { betterSqlite3Path, sqliteValues } from "./sqlite-lock.js";
import { withWorkerFlags, type WorkerHeap } from "./worker-heap.js";

/** Statements the thread keeps prepared (the most recently used). */
const KEPT_STATEMENTS = 64;

/**
 * How far the thread's V8 heap may grow past what it held after its last full collection before it runs
 * one itself, once idle. Left to V8, the rows each query makes and drops reached the old generation and
 * stayed there as garbage: its first full collection comes only near a limit sized from the process's
 * `--max-old-space-size` (hundreds of MiB), and the thread's heap grew 5.5 → 10.0 MiB in the 60-minute soak
 * (0.8 MiB/10 min); a collection forced at the end of a 14-minute one took it back below where it began
 * (6.5 → 5.0 MiB committed). A collection of a heap this small takes a few milliseconds of the query
 * thread, not of the event loop.
 */
export const QUERY_THREAD_COLLECT_AFTER_BYTES = 8 * 2 ** 20;

/**
 * Queries that may wait for the thread at once; one more is refused ({@link QueriesOverloaded}) rather than
 * queued without end: 64 searches of 50 ms are already 3 s behind.
 */
export const MAX_WAITING_QUERIES = 64;

/** A query's failure, with SQLite's code (`SQLITE_ERROR`, …) when it has one. */
export class QueryFailed extends Error {
  override readonly name: string = "QueryFailed";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * No query connection now: the query thread or the database's query side is closed (the service is
 * stopping) or the thread ended (the next query starts another). Transient: answered `unavailable`,
 * retry — another instance, or this one restarted, answers.
 */
export class QueryUnavailable extends QueryFailed {
  override readonly name: string = "QueryUnavailable";
}

/** The query thread has {@link MAX_WAITING_QUERIES} queries waiting already: retry later. */
export class QueriesOverloaded extends QueryFailed {
  override readonly name: string = "QueriesOverloaded";
}

/** What the query thread has done. */
export interface QueryThreadStats {
  /** Queries settled: answered, failed, or lost with a thread that ended. */
  queries: number;
  /** Of them, those that failed. */
  failures: number;
  /** Refused, {@link MAX_WAITING_QUERIES} waiting already (not counted in `queries`). */
  refused: number;
  /** Threads started (the first, and one after each that ended). */
  starts: number;
  /** Full collections the thread ran itself ({@link QUERY_THREAD_COLLECT_AFTER_BYTES}). */
  collections: number;
}

interface Pending {
  resolve: (rows: unknown) => void;
  reject: (err: Error) => void;
}

/** Reads of a SQLite file on a worker thread; started at the first query, again after one that ended. */
export class SqliteQueryThread {
  readonly stats: QueryThreadStats = { queries: 0, failures: 0, refused: 0, starts: 0, collections: 0 };
  #thread: Promise<Worker> | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #waiting = 0;
  #closed = false;
  readonly #heapWaiters: ((h: WorkerHeap | undefined) => void)[] = [];

  constructor(
    private readonly path: string,
    private readonly busyTimeoutMs: number,
    private readonly maxWaiting = MAX_WAITING_QUERIES,
    private readonly collectAfterBytes = QUERY_THREAD_COLLECT_AFTER_BYTES,
  ) {}

  /** Runs one read (`all` rows or the first, `get`); a statement that writes is refused. */
  async query<T>(sql: string, params: readonly unknown[] = [], method: "all" | "get" = "all"): Promise<T> {
    if (this.#closed) throw new QueryUnavailable("the query thread is closed");
    if (this.#waiting >= this.maxWaiting) {
      this.stats.refused++;
      throw new QueriesOverloaded(`${this.#waiting} queries are waiting for the query thread already`);
    }
    // Counted from the call on: those waiting for the thread to start count as well.
    this.#waiting++;
    try {
      const values = sqliteValues(params);
      const thread = await (this.#thread ??= this.#start());
      return await new Promise<T>((resolve, reject) => {
        const id = this.#nextId++;
        this.#pending.set(id, { resolve: resolve as (rows: unknown) => void, reject });
        if (this.#pending.size === 1) thread.ref();
        thread.postMessage({ id, sql, params: values, method });
      });
    } finally {
      this.#waiting--;
    }
  }

  /** The thread's V8 heap; undefined while none runs (asking does not start one). */
  async heap(): Promise<WorkerHeap | undefined> {
    const thread = this.#closed ? undefined : await this.#thread?.catch(() => undefined);
    if (!thread) return undefined;
    thread.ref();
    return new Promise((resolve) => {
      this.#heapWaiters.push(resolve);
      thread.postMessage({ heap: true });
    });
  }

  /** Ends the thread (for tests: as if it died); what was asked of it fails, the next query starts another. */
  async terminateForTest(): Promise<void> {
    const thread = await this.#thread;
    await thread?.terminate();
  }

  /** Closes the connection and ends the thread; what is still asked fails. */
  async close(): Promise<void> {
    this.#closed = true;
    const thread = await this.#thread?.catch(() => undefined);
    if (!thread) return;
    const exited = new Promise<void>((ok) => thread.once("exit", () => ok()));
    // Held until it has exited: an unreferenced thread would let a process with nothing else to do end before.
    thread.ref();
    thread.postMessage({ close: true });
    await exited;
  }

  async #start(): Promise<Worker> {
    const workerData = { driver: betterSqlite3Path(), path: this.path, busyTimeoutMs: this.busyTimeoutMs, keep: KEPT_STATEMENTS, collectAfterBytes: this.collectAfterBytes };
    const thread = withWorkerFlags(() => new Worker(QUERY_THREAD, { eval: true, workerData, execArgv: [] }), { exposeGc: true });
    try {
      await new Promise<void>((ok, fail) => {
        thread.once("error", fail);
        thread.once("message", (m: { ready?: true; failed?: string }) => {
          thread.off("error", fail);
          if (m.ready) ok();
          else fail(new QueryFailed(`the query thread could not open ${this.path}: ${m.failed}`));
        });
      });
    } catch (err) {
      this.#thread = undefined;
      await thread.terminate();
      throw err;
    }
    this.stats.starts++;
    thread.on("message", (m: { id: number; rows?: unknown; error?: { message: string; code?: string } } | { heap: WorkerHeap } | { collected: true }) => {
      if ("collected" in m) {
        this.stats.collections++;
        return;
      }
      if ("heap" in m) {
        if (this.#pending.size === 0) thread.unref();
        for (const w of this.#heapWaiters.splice(0)) w(m.heap);
        return;
      }
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (this.#pending.size === 0) thread.unref();
      this.stats.queries++;
      if (m.error) {
        this.stats.failures++;
        p.reject(new QueryFailed(m.error.message, m.error.code));
      } else p.resolve(m.rows);
    });
    // A thread that ends fails what it was asked (once: "error" comes before "exit"); the next query starts a new one.
    let over = false;
    const ended = (err: Error) => {
      if (over) return;
      over = true;
      this.#thread = undefined;
      for (const p of this.#pending.values()) p.reject(err);
      for (const w of this.#heapWaiters.splice(0)) w(undefined);
      this.stats.queries += this.#pending.size;
      this.stats.failures += this.#pending.size;
      this.#pending.clear();
    };
    thread.on("error", (err) => ended(new QueryUnavailable(`the query thread failed: ${err.message}`)));
    thread.on("exit", (code) => ended(new QueryUnavailable(`the query thread ended (exit code ${code})`)));
    thread.unref();
    return thread;
  }
}

/**
 * The query thread (plain CommonJS, run with `eval`): a read-only connection through the process's one copy
 * of better-sqlite3 (its path in workerData), temporary storage in memory; each message `{ id, sql, params,
 * method }` is answered `{ id, rows }` or `{ id, error }`, one at a time; `{ heap: true }` with its V8 heap
 * (as worker-heap.ts's thisThreadHeap, which it cannot import); `{ close: true }` ends it. Once idle, when
 * its heap has grown `collectAfterBytes` past what its last full collection left, it runs one (`gc` is
 * exposed to it by withWorkerFlags) and tells `{ collected: true }`. Not a module of
 * its own booted through tsx as the write worker is: registering tsx in a new thread made the first query
 * take ~590 ms instead of ~90.
 */
const QUERY_THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
const { getHeapSpaceStatistics, getHeapStatistics } = require("node:v8");
let db;
try {
  const Database = require(workerData.driver);
  db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs, readonly: true, fileMustExist: true });
  db.pragma("temp_store = MEMORY");
  parentPort.postMessage({ ready: true });
} catch (err) {
  parentPort.postMessage({ failed: String(err && err.message) });
  process.exit(1);
}
const kept = new Map();
// What the heap held after the thread's last full collection (or at its start).
let floor = getHeapStatistics().used_heap_size;
let collecting = false;
function tidy() {
  if (collecting || typeof globalThis.gc !== "function" || getHeapStatistics().used_heap_size - floor < workerData.collectAfterBytes) return;
  collecting = true;
  // Once the messages waiting now are answered: a collection never stands between a query and its rows.
  setImmediate(() => {
    collecting = false;
    globalThis.gc();
    floor = getHeapStatistics().used_heap_size;
    parentPort.postMessage({ collected: true });
  });
}
function statement(sql) {
  let st = kept.get(sql);
  if (st) kept.delete(sql);
  else {
    st = db.prepare(sql);
    if (kept.size >= workerData.keep) kept.delete(kept.keys().next().value);
  }
  kept.set(sql, st);
  return st;
}
parentPort.on("message", (m) => {
  if (m.close) {
    db.close();
    parentPort.close();
    return;
  }
  if (m.heap) {
    // V8's figures, not process.memoryUsage(), which also reads the RSS from /proc and throws out of file descriptors.
    const { total_heap_size: heapTotal, used_heap_size: heapUsed, external_memory: external } = getHeapStatistics();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, { size: sp.space_size, used: sp.space_used_size }]));
    parentPort.postMessage({ heap: { heapTotal, heapUsed, external, spaces } });
    return;
  }
  try {
    const st = statement(m.sql);
    if (!st.reader) throw Object.assign(new Error("a query only reads: " + m.sql.slice(0, 120)), { code: "NERVE_NOT_A_READ" });
    parentPort.postMessage({ id: m.id, rows: m.method === "get" ? st.get(m.params) : st.all(m.params) });
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: { message: String(err && err.message), code: err && typeof err.code === "string" ? err.code : undefined } });
  }
  tidy();
});
`;
