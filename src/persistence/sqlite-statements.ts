/**
 * Statements on SQLite's driver handle (better-sqlite3), with bound parameters and a cache of
 * prepared statements. MikroORM's own `execute` inlines every parameter into the SQL text through
 * knex; on the hot paths (the group commit, the projections' batches) that costs more than SQLite's
 * work, so those paths run their statements here, on the connection of the transaction they are in.
 */
import type { Transaction } from "@mikro-orm/core";

/** The part of a better-sqlite3 prepared statement used here. */
interface Statement {
  readonly reader: boolean;
  all(...params: unknown[]): unknown[];
  get(...params: unknown[]): unknown;
  run(...params: unknown[]): unknown;
}

/** The part of a better-sqlite3 database used here. */
export interface SqliteHandle {
  prepare(sql: string): Statement;
}

/** How a statement's result is wanted: rows, the first row, or nothing. */
export type Method = "all" | "get" | "run";

// Prepared statements per connection. The SQL texts of the hot paths are few (multi-row statements
// are built for a handful of row counts), so the bound only matters against unexpected variety.
const CACHE_LIMIT = 512;
const caches = new WeakMap<SqliteHandle, Map<string, Statement>>();

/** Whether `h` is a better-sqlite3 database. */
export function isSqliteHandle(h: unknown): h is SqliteHandle {
  return typeof (h as SqliteHandle | undefined)?.prepare === "function";
}

// better-sqlite3 binds numbers, strings, bigints, buffers and null; SQLite has no booleans (1/0).
function bindable(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (v instanceof Date) return v.toISOString();
  return v;
}

/** Runs one statement synchronously on `handle` with bound parameters. */
export function runStatement<T = unknown>(handle: SqliteHandle, sql: string, params: readonly unknown[], method: Method): T {
  let cache = caches.get(handle);
  if (!cache) caches.set(handle, (cache = new Map()));
  let stmt = cache.get(sql);
  if (!stmt) {
    stmt = handle.prepare(sql);
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(sql, stmt);
  }
  const bound = params.map(bindable);
  if (!stmt.reader) {
    stmt.run(...bound);
    return (method === "get" ? undefined : []) as T;
  }
  if (method === "get") return stmt.get(...bound) as T;
  if (method === "run") {
    stmt.all(...bound); // a RETURNING statement run for its effect
    return [] as T;
  }
  return stmt.all(...bound) as T;
}

/**
 * The better-sqlite3 connection a MikroORM transaction holds, or undefined (PostgreSQL, or a driver
 * this module does not know). The pool has one SQLite connection, and the transaction holds it until
 * it ends, so statements run on it belong to that transaction.
 */
export async function sqliteHandleOf(trx: Transaction): Promise<SqliteHandle | undefined> {
  const client = (trx as unknown as { client?: { acquireConnection?: () => Promise<unknown> } }).client;
  if (!client?.acquireConnection) return undefined;
  const handle = await client.acquireConnection();
  return isSqliteHandle(handle) ? handle : undefined;
}
