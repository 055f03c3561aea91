/** SQLite: a schema that stays put across restarts. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rename, stat } from "node:fs/promises";
import { GroupCommitWriter, Repository, WAL_SIZE_LIMIT, openDatabase, type Database } from "../../src/persistence/index.js";
import { openSqlite } from "../../src/persistence/sqlite-lock.js";
import { profileWrite, tempSqlitePath, until } from "../support/index.js";

let db: Database;
let path: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const tmp = await tempSqlitePath();
  path = tmp.path;
  cleanup = tmp.cleanup;
  db = await openDatabase({ url: `sqlite:${path}` });
});
afterAll(async () => {
  await db?.close();
  await cleanup?.();
});

describe("openDatabase on SQLite", () => {
  it("finds nothing to change in its own schema when reopened, and keeps the event log and its sequence", async () => {
    await new GroupCommitWriter(db).submit(profileWrite("reopen", 1, "0190a0d0-0000-7000-8000-000000000001"));
    await db.close();
    db = await openDatabase({ url: `sqlite:${path}` });
    expect((await db.orm.schema.getUpdateSchemaSQL({ safe: true })).trim()).toBe("");
    // The log and its sequence carry on where they were.
    await new GroupCommitWriter(db).submit(profileWrite("reopen", 2, "0190a0d0-0000-7000-8000-000000000002"));
    const events = await db.execute<{ seq: number; aggregate_version: number }[]>("select seq, aggregate_version from nerve_events where aggregate_id = ? order by seq", ["reopen"]);
    expect(events.map((e) => e.aggregate_version)).toEqual([1, 2]);
    expect(events[1]!.seq).toBeGreaterThan(events[0]!.seq);
    expect((await new Repository(db).pendingOutbox(10)).map((r) => r.aggregate_version)).toEqual([1, 2]);
  });
  it("reads on a connection of its own: the latest commit, while a write transaction holds the main connection", async () => {
    const repo = new Repository(db);
    await new GroupCommitWriter(db).submit(profileWrite("reader", 1, "0190a0d0-0000-7000-8000-000000000011"));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let updated!: () => void;
    const didUpdate = new Promise<void>((r) => (updated = r));
    const writing = db.connection.transactional(async (trx) => {
      await db.execute("update nerve_snapshots set version = ? where aggregate_type = ? and aggregate_id = ?", [99, "User", "reader"], "run", trx);
      updated();
      await held;
    });
    await didUpdate;
    // The main connection is inside that transaction until it is released: a read queued behind it would never
    // resolve here. The read connection answers, with the last commit (the update is not committed yet).
    expect((await repo.loadSnapshot("User", "reader"))?.version).toBe(1);
    expect(await db.read("select version from nerve_snapshots where aggregate_id = ?", ["reader"], "get")).toEqual({ version: 1 });
    release();
    await writing;
    expect((await repo.loadSnapshot("User", "reader"))?.version).toBe(99);
    // Values are bound on the read connection too: a NUL is data, and undefined is null.
    expect(await db.read("select ? as s, ? as n", ["a\u0000b", undefined], "all")).toEqual([{ s: "a\u0000b", n: null }]);
    // It cannot write; a write handed to read() goes to the main connection.
    await db.read("update nerve_snapshots set version = ? where aggregate_id = ?", [100, "reader"], "run");
    expect((await repo.loadSnapshot("User", "reader"))?.version).toBe(100);
  });
  it("checkpoints the WAL beside the writers: no commit does it, the checkpointer copies every frame", async () => {
    expect(await db.execute("pragma wal_autocheckpoint", [], "get")).toEqual({ wal_autocheckpoint: 0 });
    const writer = new GroupCommitWriter(db);
    for (let i = 0; i < 40; i++) await writer.submit(profileWrite(`cp${i}`, 1, `0190a0d0-0000-7000-8000-0000000001${String(i).padStart(2, "0")}`));
    const cp = db.checkpoints!;
    const runs = cp.runs;
    await until("a checkpoint copied the whole WAL", () => cp.runs > runs && cp.walFrames > 0 && cp.checkpointedFrames === cp.walFrames, 10_000);
    // Past about 8 MiB the WAL is restarted, so that the next writer starts it over rather than growing it.
    await db.execute("create table filler (b blob)", [], "run");
    await db.execute("insert into filler (b) values (zeroblob(?))", [24 * 2 ** 20], "run");
    expect((await stat(`${path}-wal`)).size).toBeGreaterThan(WAL_SIZE_LIMIT);
    await until("a restart", () => cp.restarts > 0, 10_000);
    await db.execute("insert into filler (b) values (zeroblob(?))", [1024], "run");
    await until("the WAL started over", () => cp.walFrames > 0 && cp.walFrames < 100, 10_000);
    // ... and the first commit after the restart cut the file back to the limit.
    expect((await stat(`${path}-wal`)).size).toBeLessThanOrEqual(WAL_SIZE_LIMIT);
    expect(cp.failures).toBe(0);
  });
  it("counts a RESTART that a reader of an older snapshot blocks, and starts the WAL over once that reader ends", async () => {
    const tmp = await tempSqlitePath();
    const own = await openDatabase({ url: `sqlite:${tmp.path}` });
    // A reader in this process (through the process's one copy of SQLite, as an operator's tool would not be,
    // but its locks are the same) holding a snapshot from before the WAL filled up.
    const reader = openSqlite(tmp.path, 1000, { readonly: true });
    try {
      const cp = own.checkpoints!;
      await own.execute("create table filler (b blob)", [], "run");
      reader.exec("begin");
      reader.prepare("select count(*) from filler").get();
      await own.execute("insert into filler (b) values (zeroblob(?))", [12 * 2 ** 20], "run");
      await until("a RESTART blocked by the reader", () => cp.restartsBlocked > 0, 10_000);
      expect(cp.failures).toBe(0); // blocked is not failed: SQLite answers, with its busy column set
      expect(cp.walFrames).toBeGreaterThan(2000);
      reader.exec("commit");
      const completed = cp.restarts - cp.restartsBlocked;
      await until("a RESTART that completed", () => cp.restarts - cp.restartsBlocked > completed, 10_000);
      await own.execute("insert into filler (b) values (zeroblob(?))", [1024], "run");
      await until("the WAL started over", () => cp.walFrames > 0 && cp.walFrames < 100, 10_000);
    } finally {
      reader.close();
      await own.close();
      await tmp.cleanup();
    }
  });
  it("starts another checkpoint thread when its thread dies: the WAL is still copied (the writers never checkpoint)", async () => {
    const cp = db.checkpoints!;
    const writer = new GroupCommitWriter(db);
    await db.endCheckpointThreadForTest!();
    for (let i = 0; i < 20; i++) await writer.submit(profileWrite(`dead${i}`, 1, `0190a0d0-0000-7000-8000-0000000002${String(i).padStart(2, "0")}`));
    const runs = cp.runs;
    await until("a checkpoint on a new thread copied the whole WAL", () => cp.threadStarts === 2 && cp.runs > runs && cp.walFrames > 0 && cp.checkpointedFrames === cp.walFrames, 10_000);
  });
  it("tells the caller of each failed checkpoint (a new thread that cannot open the file), and carries on once it can", async () => {
    const tmp = await tempSqlitePath();
    const failures: unknown[] = [];
    const own = await openDatabase({ url: `sqlite:${tmp.path}`, onCheckpointFailure: (err) => failures.push(err) });
    try {
      await own.endCheckpointThreadForTest!();
      await rename(tmp.path, `${tmp.path}.away`); // a new checkpoint thread must find the file (fileMustExist)
      await until("a failure told", () => failures.length > 0, 10_000);
      expect(String((failures[0] as Error).message)).toMatch(/could not open/);
      expect(own.checkpoints!.failures).toBeGreaterThanOrEqual(failures.length);
      await rename(`${tmp.path}.away`, tmp.path);
      await until("a new thread checkpoints", () => own.checkpoints!.threadStarts === 2, 10_000);
    } finally {
      await own.close();
      await tmp.cleanup();
    }
  });
});
