/** Opens the database through MikroORM (SQLite in WAL mode, or PostgreSQL), creating and migrating the schema. */
import { resolve } from "node:path";
import { MikroORM, type EntitySchema, type Options } from "@mikro-orm/core";
import type { AbstractSqlConnection } from "@mikro-orm/knex";
import { writeSideEntities } from "./entities.js";
import { isInMemorySqlite, lockSqliteInstance } from "./sqlite-lock.js";

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
   * holds its transaction's row locks, the lease rows its fence check read `for share` among them, and
   * would block the takeover until it woke; ended, its locks go and its commit can never land.
   */
  idleInTransactionMs?: number;
  /**
   * Holds a SQLite file for this open alone until close(), so a second instance on it refuses to start
   * (SQLite serves one instance; PostgreSQL, where this is ignored, serves many). The service's own open
   * sets it; tools that read the service's file while it runs (the CLI, tests) leave it off.
   */
  exclusiveInstance?: boolean;
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
  close(): Promise<void>;
}

/**
 * A statement runner that binds. MikroORM's `connection.execute(sql, params)` formats the values into
 * the SQL text instead (its `formatQuery`), and SQLite reads a statement only up to a NUL: one string
 * with U+0000 made a statement fail to parse (issue #10), and every call paid for escaping. Knex's raw
 * query with bindings hands the values to the driver (sqlite3 `all(sql, params)`, pg `query(text, values)`),
 * and MikroORM's own result shaping and exception conversion keep the callers' view unchanged.
 */
export function boundExecutor(connection: AbstractSqlConnection): Database["execute"] {
  const conn = connection as unknown as {
    getKnex(): { raw(sql: string, bindings: unknown[]): { transacting(trx: unknown): unknown } & PromiseLike<unknown> };
    transformRawResult<T>(res: unknown, method: SqlMethod): T;
    getPlatform(): { getExceptionConverter(): { convertException(e: Error): Error } };
  };
  return async (sql, params = [], method = "all", trx) => {
    // Knex refuses undefined bindings; SQL means null.
    const bindings = params.map((v) => (v === undefined ? null : v));
    const query = conn.getKnex().raw(sql, bindings);
    if (trx) query.transacting(trx);
    let res: unknown;
    try {
      res = await query;
    } catch (err) {
      throw conn.getPlatform().getExceptionConverter().convertException(err as Error);
    }
    return conn.transformRawResult(res, method);
  };
}

/** Opens the database and brings its schema up to date (MikroORM's safe schema update: nothing is dropped). */
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
  const common: Partial<Options> = { entities, schemaGenerator: { skipTables: HAND_MADE_TABLES }, discovery: { warnWhenNoEntities: false }, allowGlobalContext: true, debug: false };
  if (opts.url.startsWith("sqlite:")) {
    const { SqliteDriver } = await import("@mikro-orm/sqlite");
    dialect = "sqlite";
    orm = await MikroORM.init({ ...common, driver: SqliteDriver, dbName: opts.url.slice("sqlite:".length) } as Options);
    const exec = boundExecutor(orm.em.getConnection() as AbstractSqlConnection);
    await exec("pragma journal_mode = WAL");
    // A pragma takes no bound value; this one is FULL or NORMAL, checked by the config schema.
    await exec(`pragma synchronous = ${opts.sqliteSynchronous === "NORMAL" ? "NORMAL" : "FULL"}`);
    await exec(`pragma busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  } else if (/^postgres(ql)?:\/\//.test(opts.url)) {
    const { PostgreSqlDriver } = await import("@mikro-orm/postgresql");
    dialect = "postgresql";
    const idle = Math.max(1, Math.floor(opts.idleInTransactionMs ?? IDLE_IN_TRANSACTION_MS));
    orm = await MikroORM.init({ ...common, driver: PostgreSqlDriver, clientUrl: opts.url, driverOptions: { connection: { options: `-c idle_in_transaction_session_timeout=${idle}` } } } as Options);
  } else {
    throw new Error(`NERVE_DB must be sqlite:<path> or a postgres:// URL, got ${opts.url}`);
  }
  await orm.schema.updateSchema({ safe: true });
  const connection = orm.em.getConnection() as AbstractSqlConnection;
  const path = opts.url.startsWith("sqlite:") ? opts.url.slice("sqlite:".length) : undefined;
  // A plain file only: a URI filename (`file:…`) or an in-memory database is left to the one connection.
  const sqliteFile = path !== undefined && !isInMemorySqlite(path) && !path.startsWith("file:") ? { path: resolve(path), synchronous: opts.sqliteSynchronous === "NORMAL" ? ("NORMAL" as const) : ("FULL" as const), busyTimeoutMs: SQLITE_BUSY_TIMEOUT_MS } : undefined;
  return { orm, connection, dialect, sqliteFile, execute: boundExecutor(connection), close: () => orm.close(true) };
}
