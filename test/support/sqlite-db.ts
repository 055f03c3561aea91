import sqlite3 from "sqlite3";
import { afterAll, beforeAll, onTestFinished } from "vitest";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { tempSqlitePath } from "./tmp.js";

/**
 * A database on a fresh SQLite file for the calling test file: opened before its tests (then handed to
 * `set`), closed and its directory removed after them.
 */
export function useSqliteDatabase(set: (db: Database) => void): void {
  let db: Database | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const tmp = await tempSqlitePath();
    cleanup = tmp.cleanup;
    db = await openDatabase({ url: `sqlite:${tmp.path}` });
    set(db);
  });
  afterAll(async () => {
    await db?.close();
    await cleanup?.();
  });
}

/**
 * Takes a SQLite file's write lock (`begin immediate`) on a connection of its own, as another process
 * would; resolves with its release, which runs once (a second call waits for the first) and by itself
 * when the calling test finishes, so a failed assertion cannot leave the file locked for the next test.
 */
export async function lockSqliteFile(path: string): Promise<() => Promise<void>> {
  const other = new sqlite3.Database(path);
  const run = (sql: string) => new Promise<void>((resolve, reject) => other.run(sql, (err) => (err ? reject(err) : resolve())));
  await run("begin immediate");
  let released: Promise<void> | undefined;
  const release = () =>
    (released ??= (async () => {
      await run("commit");
      await new Promise<void>((resolve) => other.close(() => resolve()));
    })());
  onTestFinished(release);
  return release;
}
