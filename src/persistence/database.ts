/** Opens the database through MikroORM (SQLite in WAL mode, or PostgreSQL), creating and migrating the schema. */
import { resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { MikroORM, type EntitySchema, type Options } from "@mikro-orm/core";
import type { AbstractSqlConnection } from "@mikro-orm/knex";
import { writeSideEntities } from "./entities.js";
import { SqliteQueryThread, type QueryThreadStats } from "./query-thread.js";
import { PG_LEASE_LOCK_TIMEOUT_MS, PG_POOL, PG_QUERIES, PG_QUERY_TIMEOUT_MS, failWaitingOnConnectFailures, openPostgresSidePools, pgPoolOptions, underSchemaLock, updatePostgresSchema, withLocalSettings, type QueryTimeoutSetBy } from "./postgres.js";
import type { QueryGateStats } from "./query-gate.js";
import type { WorkerHeap } from "./worker-heap.js";
import { betterSqlite3Path, isInMemorySqlite, lockSqliteInstance, openSqlite, preparedStatements, sqliteValues, writerPragmas, type SqliteHandle } from "./sqlite-lock.js";

/** Which database and how. */
export interface DatabaseOptions {
  /** `sqlite:<path>` or a `postgres://` URL. */
  url: string;
  /** More entity schemas (read models) to create beside the write side. */
  entities?: EntitySchema<any>[];
  /** SQLite `synchronous` pragma: FULL also survives power loss, NORMAL survives a process crash. */
  sqliteSynchronous?: "FULL" | "NORMAL";
  /**
   * PostgreSQL ends a session idle inside a transaction this long (ms). A frozen former owner (SIGSTOP)
   * holds its transaction's row locks, the lease rows its fence check read `for key share` among them, and
   * would block the takeover until it woke; ended, its locks go and its commit can never land.
   */
  idleInTransactionMs?: number;
  /** PostgreSQL: connections of the main pool, at least 2 (`NERVE_PG_POOL`; {@link PG_POOL} by default). */
  pgPool?: number;
  /** PostgreSQL: queries ({@link Database.query}) that run at once, on a pool of their own (`NERVE_PG_QUERIES`; {@link PG_QUERIES}). */
  pgQueries?: number;
  /** PostgreSQL: statement_timeout of those queries, ms (`NERVE_PG_QUERY_TIMEOUT_MS`; {@link PG_QUERY_TIMEOUT_MS}). */
  pgQueryTimeoutMs?: number;
  /**
   * Holds a SQLite file for this open alone until close(), so a second instance on it refuses to start
   * (SQLite serves one instance; PostgreSQL, where this is ignored, serves many). The service's own open
   * sets it; tools that read the service's file while it runs (the CLI, tests) leave it off.
   */
  exclusiveInstance?: boolean;
  /**
   * SQLite: told of a failed WAL checkpoint (retried every second: the caller should say it at most now
   * and then). Without it a failure is only counted (`CheckpointStats.failures`).
   */
  onCheckpointFailure?: (err: unknown) => void;
  /**
   * Where Knex's own messages go (its pools' "Connection Error: …" when a pooled PostgreSQL session is
   * ended, deprecations): without it Knex writes them to the console, outside the service's JSON log.
   */
  driverLog?: DriverLog;
}

/** Knex's logger hooks (its `log` option), each given Knex's message. */
export interface DriverLog {
  warn(message: unknown): void;
  error(message: unknown): void;
  deprecate(message: unknown): void;
  debug(message: unknown): void;
}

/** How long a SQLite connection waits for another's write lock before SQLITE_BUSY. */
const SQLITE_BUSY_TIMEOUT_MS = 5000;

/** Default of {@link DatabaseOptions.idleInTransactionMs}: far above any transaction's pause between statements. */
export const IDLE_IN_TRANSACTION_MS = 2000;

/**
 * Full-text tables are SQLite virtual tables made by hand and named `*_fts`; they and their FTS5 shadow
 * tables are hidden from MikroORM, whose schema reader fails on their untyped columns (and which must
 * never alter them). Every opener of the database needs this, so it is not an option.
 */
export const HAND_MADE_TABLES: RegExp[] = [/_fts(_(data|idx|content|docsize|config))?$/];

/**
 * Indexes made by hand on tables MikroORM knows, which its schema update must leave alone (it drops
 * the indexes no entity declares, even when safe): PostgreSQL's trigram indexes, named `*_trgm`
 * (the search projection's setup makes them; an operator may build them first, CONCURRENTLY). SQLite
 * has none: its hand-made full-text index is a table of its own (HAND_MADE_TABLES), kept up by triggers,
 * which MikroORM neither reads nor drops.
 */
export const HAND_MADE_INDEXES: RegExp[] = [/_trgm$/];

/** How often the WAL of a SQLite file is checkpointed (passively, on a connection of its own). */
const CHECKPOINT_EVERY_MS = 1000;

/**
 * How long the checkpointer's connection waits for a lock. A RESTART holds the writers back while it
 * waits for the readers of an older snapshot: it gives up soon (counted in `failures`, tried again at
 * the next tick) rather than stall every commit — and a main-thread write, which waits synchronously
 * with better-sqlite3 — for the connections' 5 s.
 */
const CHECKPOINT_BUSY_MS = 250;

/** WAL frames (pages) past which a checkpoint also restarts the WAL: about 8 MiB of 4 KiB pages. */
const RESTART_FRAMES = 2000;

/** Bytes a restarted WAL file is cut back to (`journal_size_limit` of the connections that write). */
export const WAL_SIZE_LIMIT = 16 * 2 ** 20;

/** How a statement's result comes back: every row, the first row (or undefined), or nothing useful. */
export type SqlMethod = "all" | "get" | "run";

/** An open database: the ORM, its raw connection, and its dialect. */
export interface Database {
  readonly orm: MikroORM;
  readonly connection: AbstractSqlConnection;
  readonly dialect: "sqlite" | "postgresql";
  /** A SQLite file's path and the pragmas its connection runs with (what a second connection to it must match); absent otherwise. */
  readonly sqliteFile?: { path: string; synchronous: "FULL" | "NORMAL"; busyTimeoutMs: number } | undefined;
  /**
   * Runs one statement with `?` placeholders whose values the driver binds — never formatted into the
   * SQL text — optionally inside a MikroORM transaction. The only way Nerve's code runs SQL with values.
   */
  execute<T = any>(sql: string, params?: readonly unknown[], method?: SqlMethod, trx?: unknown): Promise<T>;
  /**
   * Runs a read outside any transaction (a `run` goes to {@link execute}). On a SQLite file it has a
   * read-only connection of its own: WAL lets it read the latest commit while a write transaction (a
   * group commit, a consumer's batch) holds the main connection, instead of queueing behind it. Elsewhere
   * it is {@link execute}.
   */
  read<T = any>(sql: string, params?: readonly unknown[], method?: SqlMethod): Promise<T>;
  /**
   * Runs a read that may be long — a read model's query for another service — outside any transaction.
   * On a SQLite file it runs on a thread of its own (SqliteQueryThread: a read-only connection, started at
   * the first query), so it never holds the event loop; a write is refused. On PostgreSQL it runs on a pool
   * of its own, at most {@link DatabaseOptions.pgQueries} at once and each cut off by statement_timeout
   * (QueryGate). Either refuses a query with QueriesOverloaded when too many wait. Elsewhere it is {@link execute}.
   */
  query<T = any>(sql: string, params?: readonly unknown[], method?: "all" | "get"): Promise<T>;
  /**
   * Runs a statement of the leases (membership, renewals, acquisitions, releases) outside any transaction.
   * On PostgreSQL on a pool of its own that commits, projections and queries never take, so a burst of
   * them cannot hold a renewal past a lease's validity; elsewhere it is {@link execute}.
   */
  leaseExecute<T = any>(sql: string, params?: readonly unknown[], method?: SqlMethod): Promise<T>;
  /**
   * Runs a start's DDL beyond MikroORM's (a subscriber's setup: an FTS5 table, trigram indexes) through
   * the `execute` it is given. On PostgreSQL that is one transaction holding the schema's advisory lock,
   * as the schema update at open does, with a lock_timeout (underSchemaLock): instances starting together
   * take turns, and a failed statement undoes the transaction's others. Elsewhere it is {@link execute}.
   */
  schemaChange<T>(work: (execute: Database["execute"]) => Promise<T>): Promise<T>;
  /** A SQLite file's WAL checkpoints (run beside the writers); absent elsewhere. */
  readonly checkpoints?: CheckpointStats;
  /** Ends the checkpoint thread as if it had died (tests: the next checkpoint starts another); absent where there is none. */
  endCheckpointThreadForTest?(): Promise<void>;
  /** A SQLite file's query thread ({@link query}); absent elsewhere. */
  readonly queries?: QueryThreadStats;
  /** PostgreSQL's query gate ({@link query}: its own pool, statement_timeout); absent elsewhere. */
  readonly queryGate?: QueryGateStats;
  /** PostgreSQL: how {@link query}'s statement_timeout reaches its sessions (`transaction`: a pooler dropped the startup options); absent elsewhere. */
  readonly queryTimeoutSetBy?: QueryTimeoutSetBy;
  /** The query thread's V8 heap (undefined while none runs: asking does not start one); absent where there is none. */
  queryThreadHeap?(): Promise<WorkerHeap | undefined>;
  close(): Promise<void>;
}

/** Values as every Nerve connection binds them: SQL has null where JavaScript has undefined. */
export function bindable(params: readonly unknown[]): unknown[] {
  return params.map((v) => (v === undefined ? null : v));
}

/**
 * A statement runner that binds. MikroORM's `connection.execute(sql, params)` formats the values into
 * the SQL text instead (its `formatQuery`), and SQLite reads a statement only up to a NUL: one string
 * with U+0000 made a statement fail to parse (issue #10), and every call paid for escaping. Knex's raw
 * query with bindings hands the values to the driver (better-sqlite3 `all(...params)`, pg `query(text, values)`),
 * and MikroORM's own result shaping and exception conversion keep the callers' view unchanged.
 */
export function boundExecutor(connection: AbstractSqlConnection): Database["execute"] {
  const conn = connection as unknown as {
    getKnex(): { raw(sql: string, bindings: unknown[]): { transacting(trx: unknown): unknown } & PromiseLike<unknown> };
    transformRawResult<T>(res: unknown, method: SqlMethod): T;
    getPlatform(): { getExceptionConverter(): { convertException(e: Error): Error } };
  };
  return async (sql, params = [], method = "all", trx) => {
    // Knex refuses undefined bindings.
    const query = conn.getKnex().raw(sql, bindable(params));
    if (trx) query.transacting(trx);
    let res: unknown;
    try {
      res = await query;
    } catch (err) {
      // PostgreSQL's `detail` (and `where`, `internalQuery`) may spell out the row — a learner's email — and
      // MikroORM's converter appends it to the message, which is logged and kept as a dead letter's reason.
      for (const k of ["detail", "where", "internalQuery"]) delete (err as Record<string, unknown>)[k];
      throw conn.getPlatform().getExceptionConverter().convertException(err as Error);
    }
    return conn.transformRawResult(res, method);
  };
}

/** Opens the database and brings its schema up to date (MikroORM's safe schema update: no table, column or {@link HAND_MADE_INDEXES} index is dropped). */
export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const path = opts.url.startsWith("sqlite:") ? opts.url.slice("sqlite:".length) : undefined;
  // Taken before the schema is touched: a refused second instance must not even migrate.
  const lock = opts.exclusiveInstance && path !== undefined && !isInMemorySqlite(path) ? await lockSqliteInstance(path) : undefined;
  if (!lock) return openUnlocked(opts);
  try {
    const db = await openUnlocked(opts);
    return { ...db, close: () => db.close().finally(() => lock.release()) };
  } catch (err) {
    await lock.release();
    throw err;
  }
}

async function openUnlocked(opts: DatabaseOptions): Promise<Database> {
  let orm: MikroORM;
  let dialect: Database["dialect"];
  const entities = [...writeSideEntities(opts.url.startsWith("sqlite:") ? "sqlite" : "postgresql"), ...(opts.entities ?? [])];
  const idleInTransactionMs = Math.max(1, Math.floor(opts.idleInTransactionMs ?? IDLE_IN_TRANSACTION_MS));
  const common: Partial<Options> = { entities, schemaGenerator: { skipTables: HAND_MADE_TABLES }, discovery: { warnWhenNoEntities: false }, allowGlobalContext: true, debug: false };
  // Knex writes a failed statement into its error's message with the values filled in (a learner's
  // email, a snapshot's JSON) — logged, and kept as a dead letter's reason: the SQL with its `?` only.
  const driverOptions = { compileSqlOnError: false, ...(opts.driverLog ? { log: opts.driverLog } : {}) };
  if (opts.url.startsWith("sqlite:")) {
    const { BetterSqliteDriver } = await import("@mikro-orm/better-sqlite");
    dialect = "sqlite";
    orm = await MikroORM.init({ ...common, driver: BetterSqliteDriver, dbName: opts.url.slice("sqlite:".length), driverOptions } as Options);
    const exec = boundExecutor(orm.em.getConnection() as AbstractSqlConnection);
    for (const pragma of writerPragmas(opts.sqliteSynchronous, SQLITE_BUSY_TIMEOUT_MS)) await exec(pragma);
  } else if (/^postgres(ql)?:\/\//.test(opts.url)) {
    const { PostgreSqlDriver } = await import("@mikro-orm/postgresql");
    dialect = "postgresql";
    // Two at least: the schema update at open holds one (its lock's transaction) and reads the catalog on another.
    const max = Math.max(2, Math.floor(opts.pgPool ?? PG_POOL));
    const pool = pgPoolOptions({ min: 2, max }, { idle_in_transaction_session_timeout: idleInTransactionMs });
    orm = await MikroORM.init({ ...common, driver: PostgreSqlDriver, clientUrl: opts.url, driverOptions: { ...driverOptions, ...pool } } as Options);
    failWaitingOnConnectFailures(orm.em.getConnection() as AbstractSqlConnection);
  } else {
    throw new Error(`NERVE_DB must be sqlite:<path> or a postgres:// URL, got ${opts.url}`);
  }
  const connection = orm.em.getConnection() as AbstractSqlConnection;
  try {
    if (dialect === "postgresql") await updatePostgresSchema(orm, connection, HAND_MADE_INDEXES);
    else await orm.schema.updateSchema({ safe: true });
  } catch (err) {
    await orm.close(true).catch(() => undefined);
    throw err;
  }
  const path = opts.url.startsWith("sqlite:") ? opts.url.slice("sqlite:".length) : undefined;
  // A plain file only: a URI filename (`file:…`) or an in-memory database is left to the one connection.
  const sqliteFile = path !== undefined && !isInMemorySqlite(path) && !path.startsWith("file:") ? { path: resolve(path), synchronous: opts.sqliteSynchronous === "NORMAL" ? ("NORMAL" as const) : ("FULL" as const), busyTimeoutMs: SQLITE_BUSY_TIMEOUT_MS } : undefined;
  const execute = boundExecutor(connection);
  // What every database answers alike (one connection for everything); each kind below overrides its own.
  const plain: Database = { orm, connection, dialect, sqliteFile, execute, read: execute, query: execute, leaseExecute: execute, schemaChange: (work) => work(execute), close: () => orm.close(true) };
  if (dialect === "postgresql") {
    const queries = Math.max(1, Math.floor(opts.pgQueries ?? PG_QUERIES));
    const queryTimeoutMs = Math.max(1, Math.floor(opts.pgQueryTimeoutMs ?? PG_QUERY_TIMEOUT_MS));
    const side = await openPostgresSidePools(orm, opts.url, { queries, queryTimeoutMs, idleInTransactionMs }).catch(async (err: unknown) => {
      await orm.close(true).catch(() => undefined);
      throw err;
    });
    // A side pool's statements, with the settings its sessions should have: from the startup options, or
    // behind a pooler that drops those, set in a transaction of each statement's own.
    const sideExecutor = (pool: AbstractSqlConnection, settings: Record<string, number>) =>
      side.queryTimeoutSetBy === "startup" ? boundExecutor(pool) : withLocalSettings(pool, boundExecutor(pool), { ...settings, idle_in_transaction_session_timeout: idleInTransactionMs });
    const leaseExecute = sideExecutor(side.leases, { lock_timeout: PG_LEASE_LOCK_TIMEOUT_MS });
    const query = sideExecutor(side.queries, { statement_timeout: queryTimeoutMs });
    return {
      ...plain,
      queryTimeoutSetBy: side.queryTimeoutSetBy,
      query: (sql, params = [], method = "all") => side.gate.run(() => query(sql, params, method)),
      queryGate: side.gate.stats,
      leaseExecute,
      schemaChange: (work) => underSchemaLock(connection, (trx) => work((sql, params, method) => execute(sql, params, method, trx))),
      close: () => side.close().finally(() => orm.close(true)),
    };
  }
  if (!sqliteFile) return plain;
  // The WAL is checkpointed beside the writers (Checkpointer), not by whichever commit fills it; once
  // restarted, the first commit cuts the file back to WAL_SIZE_LIMIT (it otherwise keeps its high-water mark).
  await execute("pragma wal_autocheckpoint = 0");
  await execute(`pragma journal_size_limit = ${WAL_SIZE_LIMIT}`);
  let reader: Awaited<ReturnType<typeof openReader>> | undefined;
  let checkpointer: Checkpointer | undefined;
  try {
    reader = openReader(sqliteFile.path, SQLITE_BUSY_TIMEOUT_MS);
    checkpointer = await Checkpointer.open(sqliteFile.path, CHECKPOINT_BUSY_MS, opts.onCheckpointFailure);
  } catch (err) {
    await reader?.close().catch(() => undefined);
    await orm.close(true);
    throw err;
  }
  const [r, c] = [reader, checkpointer];
  const queries = new SqliteQueryThread(sqliteFile.path, SQLITE_BUSY_TIMEOUT_MS);
  return {
    ...plain,
    read: (sql, params = [], method = "all") => (method === "run" ? execute(sql, params, method) : r.read(sql, params, method)),
    query: (sql, params = [], method = "all") => queries.query(sql, params, method),
    checkpoints: c.stats,
    endCheckpointThreadForTest: () => c.terminateForTest(),
    queries: queries.stats,
    queryThreadHeap: () => queries.heap(),
    close: () =>
      queries
        .close()
        .finally(() => c.close())
        .finally(() => r.close())
        .finally(() => orm.close(true)),
  };
}

/** One checkpoint's answer: SQLite's `busy` (a RESTART that could not finish), the WAL's frames, and of them those copied into the database. */
type CheckpointResult = { busy: boolean; log: number; checkpointed: number };

/** What the checkpointer has done: checkpoints run (of them RESTARTs) and failed, and the longest one (ms). */
export interface CheckpointStats {
  runs: number;
  restarts: number;
  /** RESTARTs that SQLite reported blocked (its `busy` column: a writer or a reader of an older snapshot outlasted the busy timeout): the WAL was copied as far as it could be but does not start over, so it keeps growing until a later one completes. */
  restartsBlocked: number;
  failures: number;
  longestMs: number;
  /** Frames in the WAL, and of them copied into the database, at the latest checkpoint. */
  walFrames: number;
  checkpointedFrames: number;
  /** Checkpoint threads started: the first, and one for each that died. */
  threadStarts: number;
}

/**
 * Checkpoints a SQLite file's WAL on a connection of its own, every {@link CHECKPOINT_EVERY_MS}: the
 * connections that write run with `wal_autocheckpoint = 0`, so no commit pays for copying the WAL into
 * the database (with SQLite's automatic checkpoint, the commit that crosses 1,000 pages does it, holding
 * its connection — and everything queued on it — for as long as that takes: the soak saw commits of
 * 2 s). A failure is counted and retried at the next tick; it never ends the process. The connection
 * lives on a thread of its own ({@link CHECKPOINT_THREAD}): better-sqlite3 runs a statement on the
 * calling thread, and a checkpoint copies megabytes and syncs the file — not for the event loop.
 */
class Checkpointer {
  readonly stats: CheckpointStats = { runs: 0, restarts: 0, restartsBlocked: 0, failures: 0, longestMs: 0, walFrames: 0, checkpointedFrames: 0, threadStarts: 1 };
  #running: Promise<void> | undefined;
  #closed = false;
  readonly #timer: NodeJS.Timeout;
  /** The checkpoint asked of the thread and not yet answered: one at a time (the timer waits for #running, close() too). */
  #pending: { resolve: (row: CheckpointResult) => void; reject: (err: Error) => void } | undefined;
  #dead: Error | undefined;

  private constructor(
    private thread: Worker,
    private readonly path: string,
    private readonly busyTimeoutMs: number,
    private readonly onFailure: (err: unknown) => void,
  ) {
    this.#watch(thread);
    this.#timer = setInterval(() => {
      if (!this.#running && !this.#closed) this.#running = this.#checkpoint().finally(() => (this.#running = undefined));
    }, CHECKPOINT_EVERY_MS);
    this.#timer.unref();
  }

  static async open(path: string, busyTimeoutMs: number, onFailure: (err: unknown) => void = () => {}): Promise<Checkpointer> {
    return new Checkpointer(await Checkpointer.#startThread(path, busyTimeoutMs), path, busyTimeoutMs, onFailure);
  }

  static async #startThread(path: string, busyTimeoutMs: number): Promise<Worker> {
    const thread = new Worker(CHECKPOINT_THREAD, { eval: true, workerData: { driver: betterSqlite3Path(), path, busyTimeoutMs } });
    try {
      await new Promise<void>((ok, fail) => {
        const failed = (err: Error) => fail(err);
        thread.once("error", failed);
        thread.once("exit", (code) => fail(new Error(`the checkpoint thread exited with code ${code} before it was ready`)));
        thread.once("message", (m: { ready?: true; failed?: string }) => {
          thread.off("error", failed);
          if (m.ready) ok();
          else fail(new Error(`the checkpoint thread could not open ${path}: ${m.failed}`));
        });
      });
    } catch (err) {
      await thread.terminate();
      throw err;
    }
    return thread;
  }

  #watch(thread: Worker): void {
    thread.on("message", (m: { row?: { busy: number; log: number; checkpointed: number }; error?: string }) => {
      const p = this.#pending;
      this.#pending = undefined;
      if (m.error !== undefined || !m.row) p?.reject(new Error(m.error ?? "no checkpoint result"));
      else p?.resolve({ busy: Number(m.row.busy) !== 0, log: Number(m.row.log), checkpointed: Number(m.row.checkpointed) });
    });
    // A thread that ends fails what it was asked; the next tick starts another (a failure until then).
    const fail = (err: Error) => {
      if (this.thread !== thread) return;
      this.#dead ??= err;
      this.#pending?.reject(err);
      this.#pending = undefined;
    };
    thread.on("error", fail);
    thread.on("exit", (code) => fail(new Error(`the checkpoint thread exited with code ${code}`)));
    thread.unref();
  }

  /** Ends the thread as if it had died (for tests): the next tick starts another. */
  async terminateForTest(): Promise<void> {
    await this.thread.terminate();
  }

  /**
   * One checkpoint now (also what the timer runs); never rejects. PASSIVE copies what it can without
   * waiting for anyone. But with commits arriving all the time, the WAL is never wholly copied at the
   * moment a writer begins, so it would never start over and would grow without end: once it holds more
   * than {@link RESTART_FRAMES}, a RESTART follows, which waits for the transaction in progress, holds
   * new writers back while it copies the few frames written since the passive pass, and lets the next
   * writer start the WAL from its beginning. A thread that died is replaced first: without checkpoints
   * (the writers' automatic ones are off) the WAL would grow for as long as the process runs.
   */
  async #checkpoint(): Promise<void> {
    try {
      if (this.#dead && !this.#closed) await this.#restartThread();
      const passive = await this.#run("PASSIVE");
      if (passive.log > RESTART_FRAMES) await this.#run("RESTART");
    } catch (err) {
      this.stats.failures++;
      try {
        this.onFailure(err);
      } catch {
        // the callback's own failure is not the checkpoint's
      }
    }
  }

  async #restartThread(): Promise<void> {
    const thread = await Checkpointer.#startThread(this.path, this.busyTimeoutMs);
    if (this.#closed) {
      await thread.terminate();
      throw new Error("the checkpointer is closed");
    }
    this.thread = thread;
    this.#watch(thread);
    this.#dead = undefined;
    this.stats.threadStarts++;
  }

  async #run(mode: "PASSIVE" | "RESTART"): Promise<CheckpointResult> {
    if (this.#dead) throw this.#dead;
    const started = performance.now();
    const out = await new Promise<CheckpointResult>((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.thread.postMessage({ mode });
    });
    this.stats.runs++;
    if (mode === "RESTART") {
      this.stats.restarts++;
      if (out.busy) this.stats.restartsBlocked++;
    }
    this.stats.longestMs = Math.max(this.stats.longestMs, performance.now() - started);
    this.stats.walFrames = out.log;
    this.stats.checkpointedFrames = out.checkpointed;
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#running;
    // A last checkpoint, so a clean stop leaves the WAL copied into the database.
    await this.#checkpoint();
    if (this.#dead) return;
    const exited = new Promise<void>((ok) => this.thread.once("exit", () => ok()));
    this.thread.postMessage({ close: true });
    await exited;
  }
}

/**
 * The checkpointer's thread (plain CommonJS, run with `eval`): a connection through the process's one copy
 * of better-sqlite3 (its path in workerData) that runs `pragma wal_checkpoint(<mode>)` when asked, one at
 * a time, answering `{ row }` or `{ error }`; `{ close: true }` closes the connection and ends it.
 */
const CHECKPOINT_THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
let db;
try {
  const Database = require(workerData.driver);
  db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs, fileMustExist: true });
  parentPort.postMessage({ ready: true });
} catch (err) {
  parentPort.postMessage({ failed: String(err && err.message) });
  process.exit(1);
}
parentPort.on("message", (m) => {
  if (m.close) {
    db.close();
    parentPort.close();
    return;
  }
  if (m.mode !== "PASSIVE" && m.mode !== "RESTART") return parentPort.postMessage({ error: "unknown checkpoint mode" });
  try {
    parentPort.postMessage({ row: db.prepare("pragma wal_checkpoint(" + m.mode + ")").get() });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message) });
  }
});
`;

/**
 * A read-only connection to a SQLite file, through the copy of SQLite MikroORM uses (openSqlite: one
 * copy per process, or the copies' locks would not see each other). Its reads run on the calling thread
 * (better-sqlite3), each to its end (`all` / `get`), so no statement is left mid-result holding its read
 * transaction open and keeping checkpoints from emptying the WAL. Statements are prepared once per SQL
 * text (preparedStatements: the most recently used {@link READER_STATEMENTS} kept).
 */
function openReader(path: string, busyTimeoutMs: number): { read: <T>(sql: string, params: readonly unknown[], method: "all" | "get") => Promise<T>; close: () => Promise<void> } {
  const handle: SqliteHandle = openSqlite(path, busyTimeoutMs, { readonly: true });
  const statement = preparedStatements(handle, READER_STATEMENTS);
  return {
    // Async only for its callers: a statement's error becomes the promise's.
    read: async <T>(sql: string, params: readonly unknown[], method: "all" | "get") => {
      const st = statement(sql);
      const values = sqliteValues(params);
      if (!st.reader) {
        st.run(values);
        return (method === "get" ? undefined : []) as T;
      }
      return (method === "get" ? st.get(values) : st.all(values)) as T;
    },
    close: async () => {
      handle.close();
    },
  };
}

/** Statements the reader keeps prepared. */
const READER_STATEMENTS = 64;
