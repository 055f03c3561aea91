/**
 * One Nerve instance per SQLite file (CONTRACT.md §8). SQLite's locks guard single transactions, not
 * ownership: a second instance on the same file would run its own actors, group commit and relay beside
 * the first and overwrite its aggregates. So the service holds `<file>.lock` for its whole life: a tiny
 * SQLite database in which it keeps a write transaction open (`begin immediate`, SQLite's RESERVED lock).
 * That lock is the kernel's (fcntl), so it goes when the process goes, however it dies — a kill -9
 * leaves nothing to clean up and no pid to guess about. Other processes can still read the lock file,
 * where the holder committed its pid just before taking the lock, to name it in the refusal.
 *
 * The lock file must never be opened and closed outside SQLite in the holding process: closing any
 * descriptor of a file drops all of that process's fcntl locks on it (SQLite itself takes care of that).
 */
import { randomUUID } from "node:crypto";
import { mkdir, realpath } from "node:fs/promises";
import { createRequire } from "node:module";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import type { Exec } from "./batch-statements.js";

/** A connection of better-sqlite3's (synchronous: each call runs the statement on the calling thread). */
export type SqliteHandle = BetterSqlite3.Database;

/** Who holds a SQLite file, as it recorded itself. */
export interface SqliteLockHolder {
  /** Its process id, on {@link SqliteLockHolder.host}. */
  pid: number;
  /** Its machine's name: a pid means something only there. */
  host: string;
  /** When it took the lock (ISO 8601). */
  since: string;
}

/** The SQLite file is held by another live Nerve instance: no retry helps until that one stops. */
export class SqliteInUseError extends Error {
  override readonly name = "SqliteInUseError";
  constructor(
    readonly path: string,
    readonly holder: SqliteLockHolder | undefined,
    opts?: ErrorOptions,
  ) {
    super(
      `the SQLite database ${path} is in use by another Nerve instance (${describeHolder(holder)}); ` +
        `SQLite serves exactly one instance — run several instances on PostgreSQL (NERVE_DB=postgres://…)`,
      opts,
    );
  }
}

/** A held SQLite file. */
export interface SqliteInstanceLock {
  /** The lock file. */
  readonly file: string;
  /** Lets the next instance start; idempotent. */
  release(): Promise<void>;
}

/** How long a start waits for a holder that is only committing its own row (a lock held for good fails after it). */
const BUSY_MS = 200;
/** Rounds of the take-and-check protocol before a start gives up (racing starters settle in one or two). */
const ATTEMPTS = 5;

/** Whether a SQLite path names no file (each connection to it is a database of its own). */
export function isInMemorySqlite(path: string): boolean {
  return path === "" || path === ":memory:" || /^file:.*[?&]mode=memory\b/.test(path);
}

/**
 * Takes `<dbPath>.lock` for this open until {@link SqliteInstanceLock.release}, or throws
 * {@link SqliteInUseError} naming the live holder — another process, or another open in this one.
 */
export async function lockSqliteInstance(dbPath: string): Promise<SqliteInstanceLock> {
  const dir = resolve(dirname(dbPath));
  await mkdir(dir, { recursive: true });
  // One lock file whichever way the directory is reached (relative, absolute, through a symlink).
  const file = join(await realpath(dir), `${basename(dbPath)}.lock`);
  let db: SqliteHandle;
  try {
    db = openSqlite(file, BUSY_MS);
  } catch (err) {
    throw wrap(err as Error, file);
  }
  const me: SqliteLockHolder & { token: string } = { token: randomUUID(), pid: process.pid, host: hostname(), since: new Date().toISOString() };
  // Synchronous (better-sqlite3): a holder only committing its own row is waited for up to BUSY_MS, once, at start.
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      db.exec("begin immediate");
      db.exec("create table if not exists nerve_instance (token text not null, pid integer not null, host text not null, since text not null)");
      db.exec("delete from nerve_instance");
      db.prepare("insert into nerve_instance (token, pid, host, since) values (?, ?, ?, ?)").run(me.token, me.pid, me.host, me.since);
      db.exec("commit");
      // Another starter may have written its row between that commit and this lock: hold only over ours.
      db.exec("begin immediate");
      const row = db.prepare("select token from nerve_instance").get() as { token: string } | undefined;
      if (row?.token === me.token) {
        const held = db;
        let released: Promise<void> | undefined;
        return { file, release: () => (released ??= Promise.resolve().then(() => void held.close())) };
      }
      db.exec("rollback");
    }
    throw new SqliteInUseError(dbPath, holderOf(db));
  } catch (err) {
    try {
      if (db.inTransaction) db.exec("rollback");
    } catch {
      // Nothing to roll back.
    }
    const busy = isBusy(err);
    const holder = busy ? holderOf(db) : undefined;
    db.close();
    if (busy) throw new SqliteInUseError(dbPath, holder, { cause: err });
    throw err instanceof SqliteInUseError ? err : wrap(err as Error, file);
  }
}

function describeHolder(h: SqliteLockHolder | undefined): string {
  if (!h) return "pid unknown";
  if (h.host !== hostname()) return `pid ${h.pid} on ${h.host}`;
  return h.pid === process.pid ? `pid ${h.pid}, in this process` : `pid ${h.pid}`;
}

/** Whether a SQLite error is a lock another connection holds (SQLITE_BUSY and its extended codes). */
export function isBusy(err: unknown): boolean {
  return String((err as { code?: unknown } | undefined)?.code ?? "").startsWith("SQLITE_BUSY");
}

function holderOf(db: SqliteHandle): SqliteLockHolder | undefined {
  try {
    return db.prepare("select pid, host, since from nerve_instance").get() as SqliteLockHolder | undefined;
  } catch {
    return undefined;
  }
}

function wrap(err: Error, file: string): Error {
  // A damaged lock file holds nothing worth keeping; anything else (a read-only directory, say) is for the operator to fix.
  const damaged = /SQLITE_(NOTADB|CORRUPT)/.test(`${(err as { code?: string }).code ?? ""} ${err.message}`) ? " — with no Nerve running on this database, delete it" : "";
  return new Error(`cannot take the SQLite instance lock ${file}: ${err.message}${damaged}`, { cause: err });
}

/**
 * The driver MikroORM's SQLite dialect loads (better-sqlite3), resolved from it: no second copy. Every
 * connection of the process to the service's file — MikroORM's, the write worker's, the reader's, the
 * checkpointer's — must go through this one copy of SQLite: POSIX locks are per process, so a second
 * copy (another driver's) would not see the first one's locks (sqlite.org/howtocorrupt.html §2.2.1).
 */
export function betterSqlite3Path(): string {
  const fromHere = createRequire(import.meta.url);
  return createRequire(fromHere.resolve("@mikro-orm/better-sqlite")).resolve("better-sqlite3");
}

/** better-sqlite3's constructor, from {@link betterSqlite3Path}. */
export function loadBetterSqlite3(): typeof BetterSqlite3 {
  return createRequire(import.meta.url)(betterSqlite3Path()) as typeof BetterSqlite3;
}

/**
 * Opens a connection of its own to `path` through {@link loadBetterSqlite3}'s copy of SQLite (read-write
 * and created by default; `readonly` or `mustExist` otherwise), waiting up to `busyTimeoutMs` for another
 * connection's lock — synchronously, on the calling thread.
 */
export function openSqlite(path: string, busyTimeoutMs: number, opts: { readonly?: boolean; mustExist?: boolean } = {}): SqliteHandle {
  const Database = loadBetterSqlite3();
  return new Database(path, { timeout: busyTimeoutMs, readonly: opts.readonly ?? false, fileMustExist: opts.mustExist ?? opts.readonly ?? false });
}

/**
 * The pragmas of both connections that write, MikroORM's and the write worker's: the same durability for
 * a commit whichever connection makes it. A pragma takes no bound value; `synchronous` is FULL or NORMAL
 * (checked by the config schema). Temporary files stay in memory: a group commit's statement journal
 * passes SQLite's 64 KiB and was otherwise a new file in /var/tmp for every transaction.
 */
export function writerPragmas(synchronous: "FULL" | "NORMAL" | undefined, busyTimeoutMs: number): string[] {
  return ["pragma journal_mode = WAL", `pragma synchronous = ${synchronous === "NORMAL" ? "NORMAL" : "FULL"}`, `pragma busy_timeout = ${Math.floor(busyTimeoutMs)}`, "pragma temp_store = MEMORY"];
}

/**
 * A connection's statements, prepared once per SQL text, the `keep` most recently used kept (a Map
 * iterates in insertion order: a hit moves to its end, the first is let go). One let go is finalized when
 * V8 collects it (better-sqlite3 has no finalize); it is not running then, since each statement here runs
 * to its end before the next is asked for. One that does not prepare throws SQLite's error.
 */
export function preparedStatements(handle: SqliteHandle, keep: number): (sql: string) => BetterSqlite3.Statement {
  const kept = new Map<string, BetterSqlite3.Statement>();
  return (sql) => {
    let st = kept.get(sql);
    if (st) kept.delete(sql);
    else {
      st = handle.prepare(sql);
      if (kept.size >= keep) kept.delete(kept.keys().next().value as string);
    }
    kept.set(sql, st);
    return st;
  };
}

/**
 * The group commit's `exec` (batch-statements.ts) over a connection's prepared statements: a statement that
 * returns rows (a select, an insert … returning) is read with all(), any other is run. A statement that
 * does not prepare fails like any database error.
 */
export function statementExec(statement: (sql: string) => BetterSqlite3.Statement): Exec {
  return async <T>(sql: string, params: unknown[]) => {
    const st = statement(sql);
    const values = sqliteValues(params);
    if (st.reader) return st.all(values) as T;
    st.run(values);
    return [] as T;
  };
}

/**
 * A value as better-sqlite3 binds it, the way node-sqlite3 (and knex's better-sqlite3 dialect) did:
 * undefined is SQL null, a boolean 1 or 0, a Date its epoch milliseconds. better-sqlite3 itself refuses
 * booleans and Dates.
 */
export function sqliteValue(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (v instanceof Date) return v.valueOf();
  return v;
}

/** {@link sqliteValue} over a statement's parameters (the same array when nothing needs changing). */
export function sqliteValues(params: readonly unknown[]): unknown[] {
  for (let i = 0; i < params.length; i++) {
    const v = params[i];
    if (v === undefined || typeof v === "boolean" || v instanceof Date) return params.map(sqliteValue);
  }
  return params as unknown[];
}
