/** SQLite through better-sqlite3: bound statements on a transaction's connection, and a schema that stays put across restarts. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { txOf } from "../../src/consumers/index.js";
import { GroupCommitWriter, Repository, openDatabase, runStatement, sqliteHandleOf, type Database, type SqliteHandle } from "../../src/persistence/index.js";
import { profileWrite, tempSqlitePath } from "../support/index.js";

let db: Database;
let path: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const tmp = await tempSqlitePath();
  path = tmp.path;
  cleanup = tmp.cleanup;
  db = await openDatabase({ url: `sqlite:${path}` });
  await db.connection.execute("create table probe (id integer primary key, flag integer, note text, at text)");
});
afterAll(async () => {
  await db?.close();
  await cleanup?.();
});

describe("runStatement", () => {
  it("binds what better-sqlite3 cannot (booleans, undefined, dates) the way the ORM stores them", async () => {
    await db.connection.transactional(async (trx) => {
      const h = (await sqliteHandleOf(trx))!;
      expect(h).toBeDefined();
      runStatement(h, "insert into probe (id, flag, note, at) values (?, ?, ?, ?)", [1, true, undefined, new Date("2026-01-02T03:04:05.000Z")], "run");
      runStatement(h, "insert into probe (id, flag, note, at) values (?, ?, ?, ?)", [2, false, "two", null], "run");
    });
    const rows = await db.connection.execute("select * from probe order by id");
    expect(rows).toEqual([
      { id: 1, flag: 1, note: null, at: "2026-01-02T03:04:05.000Z" },
      { id: 2, flag: 0, note: "two", at: null },
    ]);
  });

  it("answers all, get and run, also for a RETURNING statement run for its effect, and prepares each text once", async () => {
    await db.connection.transactional(async (trx) => {
      const real = (await sqliteHandleOf(trx))!;
      const prepared: string[] = [];
      const h: SqliteHandle = { prepare: (sql) => (prepared.push(sql), real.prepare(sql)) };
      expect(runStatement(h, "select id from probe where id > ? order by id", [0], "all")).toEqual([{ id: 1 }, { id: 2 }]);
      expect(runStatement(h, "select id from probe where id > ? order by id", [1], "get")).toEqual({ id: 2 });
      expect(runStatement(h, "select id from probe where id > ? order by id", [9], "get")).toBeUndefined();
      expect(runStatement(h, "update probe set note = ? where id = ? returning id", ["x", 1], "run")).toEqual([]);
      expect(runStatement(h, "update probe set note = ? where id = ?", ["y", 2], "get")).toBeUndefined();
      expect(prepared).toEqual(["select id from probe where id > ? order by id", "update probe set note = ? where id = ? returning id", "update probe set note = ? where id = ?"]);
    });
    expect(await db.connection.execute("select note from probe order by id")).toEqual([{ note: "x" }, { note: "y" }]);
  });

  it("runs a consumer's statements inside its transaction: a failure rolls them back", async () => {
    await expect(
      db.connection.transactional(async (trx) => {
        const tx = txOf(db, trx);
        await tx.execute("insert into probe (id, flag) values (?, ?)", [3, true], "run");
        expect(await tx.execute("select count(*) as n from probe", [], "get")).toEqual({ n: 3 });
        throw new Error("projection failed");
      }),
    ).rejects.toThrow("projection failed");
    expect(await db.connection.execute("select count(*) as n from probe", [], "get")).toEqual({ n: 2 });
  });
});

describe("openDatabase on SQLite", () => {
  it("finds nothing to change in its own schema when reopened, and keeps the event log and its sequence", async () => {
    const writer = new GroupCommitWriter(db);
    await writer.submit(profileWrite("reopen", 1, "0190a0d0-0000-7000-8000-000000000001"));
    await db.close();
    db = await openDatabase({ url: `sqlite:${path}` });
    expect((await db.orm.schema.getUpdateSchemaSQL({ safe: true })).trim()).toBe("");
    // The log and its sequence carry on where they were.
    await new GroupCommitWriter(db).submit(profileWrite("reopen", 2, "0190a0d0-0000-7000-8000-000000000002"));
    const events = await db.connection.execute<{ seq: number; aggregate_version: number }[]>("select seq, aggregate_version from nerve_events where aggregate_id = ? order by seq", ["reopen"]);
    expect(events.map((e) => e.aggregate_version)).toEqual([1, 2]);
    expect(events[1]!.seq).toBeGreaterThan(events[0]!.seq);
    expect((await new Repository(db).pendingOutbox(10)).map((r) => r.aggregate_version)).toEqual([1, 2]);
  });
});
