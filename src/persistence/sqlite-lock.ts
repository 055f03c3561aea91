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
import type { Database as Sqlite3Database } from "sqlite3";

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
  const db = await openSqlite3(file, BUSY_MS).catch((err: Error) => {
    throw wrap(err, file);
  });
  const me: SqliteLockHolder & { token: string } = { token: randomUUID(), pid: process.pid, host: hostname(), since: new Date().toISOString() };
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      await run(db, "begin immediate");
      await run(db, "create table if not exists nerve_instance (token text not null, pid integer not null, host text not null, since text not null)");
      await run(db, "delete from nerve_instance");
      await run(db, "insert into nerve_instance (token, pid, host, since) values (?, ?, ?, ?)", [me.token, me.pid, me.host, me.since]);
      await run(db, "commit");
      // Another starter may have written its row between that commit and this lock: hold only over ours.
      await run(db, "begin immediate");
      const row = await get<{ token: string }>(db, "select token from nerve_instance");
      if (row?.token === me.token) {
        let released: Promise<void> | undefined;
        return { file, release: () => (released ??= closeSqlite3(db)) };
      }
      await run(db, "rollback");
    }
    throw new SqliteInUseError(dbPath, await holderOf(db));
  } catch (err) {
    await run(db, "rollback").catch(() => undefined);
    const busy = (err as { code?: string }).code === "SQLITE_BUSY";
    const holder = busy ? await holderOf(db) : undefined;
    await closeSqlite3(db).catch(() => undefined);
    if (busy) throw new SqliteInUseError(dbPath, holder, { cause: err });
    throw err instanceof SqliteInUseError ? err : wrap(err as Error, file);
  }
}

function describeHolder(h: SqliteLockHolder | undefined): string {
  if (!h) return "pid unknown";
  if (h.host !== hostname()) return `pid ${h.pid} on ${h.host}`;
  return h.pid === process.pid ? `pid ${h.pid}, in this process` : `pid ${h.pid}`;
}

async function holderOf(db: Sqlite3Database): Promise<SqliteLockHolder | undefined> {
  return get<SqliteLockHolder>(db, "select pid, host, since from nerve_instance").catch(() => undefined);
}

function wrap(err: Error, file: string): Error {
  // A damaged lock file holds nothing worth keeping; anything else (a read-only directory, say) is for the operator to fix.
  const damaged = /SQLITE_(NOTADB|CORRUPT)/.test(err.message) ? " — with no Nerve running on this database, delete it" : "";
  return new Error(`cannot take the SQLite instance lock ${file}: ${err.message}${damaged}`, { cause: err });
}

/**
 * The driver MikroORM's SQLite dialect loads, resolved from it: no second copy, no dependency of our own.
 * Every connection of the process to the service's file must go through this one copy of SQLite: POSIX
 * locks are per process, so a second copy (better-sqlite3's) cannot see the first one's locks.
 */
export function loadSqlite3(): typeof import("sqlite3") {
  const fromHere = createRequire(import.meta.url);
  return createRequire(fromHere.resolve("@mikro-orm/sqlite"))("sqlite3") as typeof import("sqlite3");
}

function run(db: Sqlite3Database, sql: string, params: unknown[] = []): Promise<void> {
  return new Promise((ok, fail) => db.run(sql, params, (err: Error | null) => (err ? fail(err) : ok())));
}

function get<T>(db: Sqlite3Database, sql: string): Promise<T | undefined> {
  return new Promise((ok, fail) => db.get(sql, (err: Error | null, row: T | undefined) => (err ? fail(err) : ok(row))));
}

/**
 * Opens a connection of its own to `path` through {@link loadSqlite3}'s copy of SQLite (read-write and
 * created by default), waiting up to `busyTimeoutMs` for another connection's lock.
 */
export function openSqlite3(path: string, busyTimeoutMs: number, mode?: number): Promise<Sqlite3Database> {
  const sqlite3 = loadSqlite3();
  return new Promise<Sqlite3Database>((ok, fail) => {
    const d: Sqlite3Database = new sqlite3.Database(path, mode ?? sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE, (err) => {
      if (err) return fail(err);
      d.configure("busyTimeout", busyTimeoutMs);
      ok(d);
    });
  });
}

/** Closes a connection from {@link openSqlite3}. */
export function closeSqlite3(db: Sqlite3Database): Promise<void> {
  return new Promise((ok, fail) => db.close((err) => (err ? fail(err) : ok())));
}
