import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, onTestFinished } from "vitest";
import type { EntitySchema } from "@mikro-orm/core";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { betterSqlite3Path } from "../../src/persistence/sqlite-lock.js";
import { tempSqlitePath } from "./tmp.js";

/**
 * A database on a fresh SQLite file for the calling test file: opened before its tests (then handed to
 * `set`), closed and its directory removed after them. `entities`: tables beyond the write side's.
 */
export function useSqliteDatabase(set: (db: Database) => void, entities?: EntitySchema<any>[]): void {
  let db: Database | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const tmp = await tempSqlitePath();
    cleanup = tmp.cleanup;
    db = await openDatabase({ url: `sqlite:${tmp.path}`, entities });
    set(db);
  });
  afterAll(async () => {
    await db?.close();
    await cleanup?.();
  });
}

/**
 * Takes a SQLite file's write lock (`begin immediate`) on a connection of its own, on a thread of its own,
 * as another process would; resolves with its release, which runs once (a second call waits for the
 * first) and by itself when the calling test finishes, so a failed assertion cannot leave the file locked
 * for the next test. With `forMs` the thread releases it itself after that long: a writer on the test's
 * own thread waits for a lock synchronously (better-sqlite3), and no release from that thread could run.
 */
export async function lockSqliteFile(path: string, opts: { forMs?: number } = {}): Promise<() => Promise<void>> {
  // Through the process's one copy of SQLite (a second copy's locks would not be seen by the first's).
  const holder = new Worker(LOCK_THREAD, { eval: true, workerData: { driver: betterSqlite3Path(), path, forMs: opts.forMs } });
  const exited = new Promise<void>((resolve) => holder.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    holder.once("error", reject);
    holder.once("message", () => resolve());
  });
  let released: Promise<void> | undefined;
  const release = () =>
    (released ??= (async () => {
      holder.postMessage("release");
      await exited;
    })());
  onTestFinished(release);
  return release;
}

// The lock's thread (CommonJS, run with eval): takes the lock, says so, and lets it go when told or after forMs.
const LOCK_THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path, { timeout: 5000 });
db.exec("begin immediate");
let done = false;
const release = () => {
  if (done) return;
  done = true;
  db.exec("commit");
  db.close();
  parentPort.close();
};
parentPort.on("message", release);
if (workerData.forMs !== undefined) setTimeout(release, workerData.forMs);
parentPort.postMessage("locked");
`;
