import { afterAll, beforeAll } from "vitest";
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
