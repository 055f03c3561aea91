/**
 * The read models' queries on a thread of their own (SqliteQueryThread, Database.query): they answer as the
 * read connection does, a long one leaves the event loop free, a failure comes back as an error with
 * SQLite's code, a write is refused, and a thread that ends fails what it was asked and is replaced.
 */
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { processExposesGc } from "../../src/persistence/worker-heap.js";
import { MAX_WAITING_QUERIES, QueriesOverloaded, QueryFailed, SqliteQueryThread, type Database } from "../../src/persistence/index.js";
import { queryTxOf } from "../../src/consumers/index.js";
import { useSqliteDatabase } from "../support/index.js";

let db: Database;

/** Counts to `n` in SQL: a read that takes a while (about 100 ms per million here). */
const LONG = "with recursive c(x) as (select 1 union all select x + 1 from c where x < ?) select count(*) as n from c";

describe("Database.query on SQLite", () => {
  useSqliteDatabase((d) => (db = d));

  it("answers rows and a row with the values bound, as the read connection does", async () => {
    await db.execute("create table qt_rows (id integer primary key, name text, flag integer, at integer)", [], "run");
    await db.execute("insert into qt_rows (id, name, flag, at) values (?, ?, ?, ?), (?, ?, ?, ?)", [1, "a\u0000b", true, new Date(5), 2, "c", false, null], "run");
    const sql = "select id, name, flag, at from qt_rows where flag = ? or id = ? order by id";
    expect(await db.query(sql, [true, 2])).toEqual(await db.read(sql, [true, 2]));
    expect(await db.query(sql, [true, 2])).toEqual([
      { id: 1, name: "a\u0000b", flag: 1, at: 5 },
      { id: 2, name: "c", flag: 0, at: null },
    ]);
    expect(await db.query("select name from qt_rows where id = ?", [1], "get")).toEqual({ name: "a\u0000b" });
    expect(await db.query("select name from qt_rows where id = ?", [9], "get")).toBeUndefined();
    expect(db.queries?.starts).toBe(1);
  });

  it("leaves the event loop free while a long query runs", async () => {
    let answered = false;
    let ticksWhileRunning = 0;
    const timer = setInterval(() => void (answered || ticksWhileRunning++), 5);
    try {
      const row = await db.query<{ n: number }>(LONG, [3_000_000], "get").finally(() => (answered = true));
      expect(row.n).toBe(3_000_000);
      // On the main thread the statement would have run before any timer could: none would have fired before its answer.
      expect(ticksWhileRunning).toBeGreaterThan(0);
    } finally {
      clearInterval(timer);
    }
  });

  it("fails a statement that does not prepare with SQLite's code, refuses a write, and goes on", async () => {
    const bad = await db.query("select * from no_such_table").catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(QueryFailed);
    expect(bad).toMatchObject({ code: "SQLITE_ERROR", message: expect.stringMatching(/no such table: no_such_table/) });
    const write = await db.query("delete from qt_rows").catch((e: unknown) => e);
    expect(write).toMatchObject({ code: "NERVE_NOT_A_READ" });
    await expect(queryTxOf(db).execute("delete from qt_rows", [], "run")).rejects.toThrow(/a query only reads/);
    expect(await db.query("select count(*) as n from qt_rows", [], "get")).toEqual({ n: 2 });
  });
});

describe("SqliteQueryThread's end", () => {
  useSqliteDatabase((d) => (db = d));

  it("fails what was asked of a thread that ended, answers the next query on a new one, and refuses queries once closed", async () => {
    const thread = new SqliteQueryThread(db.sqliteFile!.path, 5000);
    try {
      // Its heap is asked of the thread itself; asking starts none.
      expect(await thread.heap()).toBeUndefined();
      expect(thread.stats.starts).toBe(0);
      expect(await thread.query("select 1 as one", [], "get")).toEqual({ one: 1 });
      const heap = await thread.heap();
      expect(heap?.heapUsed).toBeGreaterThan(0);
      expect(heap!.heapUsed).toBeLessThanOrEqual(heap!.heapTotal);
      expect(heap!.spaces.new_space!.size).toBeGreaterThan(0);
      const inFlight = thread.query(LONG, [5_000_000], "get").catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 20));
      await thread.terminateForTest();
      expect(await inFlight).toMatchObject({ name: "QueryUnavailable", message: expect.stringMatching(/the query thread ended/) });
      expect(await thread.query("select 2 as two", [], "get")).toEqual({ two: 2 });
      expect(thread.stats).toEqual({ starts: 2, failures: 1, queries: 3, refused: 0, collections: 0 });
    } finally {
      await thread.close();
    }
    await expect(thread.query("select 3")).rejects.toThrow(/closed/);
    expect(await thread.heap()).toBeUndefined();
  });
});

describe("SqliteQueryThread's heap", () => {
  useSqliteDatabase((d) => (db = d));

  it("runs a full collection itself once its heap has grown past the bound, and leaves gc() exposed to no thread started after it", async () => {
    // A bound of 1 MiB: each query's rows (2,000 strings of 200 characters) are about half of it.
    const thread = new SqliteQueryThread(db.sqliteFile!.path, 5000, 64, 2 ** 20);
    const ROWS = "with recursive c(x) as (select 1 union all select x + 1 from c where x < 2000) select x, printf('%0200d', x) as pad from c";
    try {
      for (let i = 0; i < 40; i++) expect(await thread.query<unknown[]>(ROWS)).toHaveLength(2000);
      // The collection runs once the thread is idle; its message comes before the answer to a later heap reading.
      await new Promise((r) => setTimeout(r, 50));
      const heap = await thread.heap();
      expect(thread.stats.collections).toBeGreaterThan(0);
      expect(heap!.heapUsed).toBeLessThan(32 * 2 ** 20);
      if (!processExposesGc()) {
        const later = new Worker("require('node:worker_threads').parentPort.postMessage(typeof gc)", { eval: true });
        expect(await new Promise((r) => later.once("message", r))).toBe("undefined");
        await later.terminate();
      }
    } finally {
      await thread.close();
    }
  });
});

describe("SqliteQueryThread's bound", () => {
  useSqliteDatabase((d) => (db = d));

  it("refuses a query beyond the waiting bound, counts it, and answers again once the queue is shorter", async () => {
    const thread = new SqliteQueryThread(db.sqliteFile!.path, 5000, 2);
    try {
      // Asked in one tick, before the thread has started: the bound counts them from the call.
      const waiting = [thread.query(LONG, [300_000], "get"), thread.query(LONG, [300_000], "get")];
      const refused = await thread.query("select 1 as one", [], "get").catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(QueriesOverloaded);
      expect(await Promise.all(waiting)).toEqual([{ n: 300_000 }, { n: 300_000 }]);
      expect(await thread.query("select 1 as one", [], "get")).toEqual({ one: 1 });
      expect(thread.stats).toMatchObject({ refused: 1, queries: 3, failures: 0 });
    } finally {
      await thread.close();
    }
  });

  it("answers a read model's query refused for that reason `unavailable`, safe to retry", async () => {
    const tx = queryTxOf(db);
    // MAX_WAITING_QUERIES asked in one tick fill the Database's query thread's queue; one more is refused.
    const queued = Array.from({ length: MAX_WAITING_QUERIES }, () => tx.execute("select 1 as one", [], "get"));
    await expect(tx.execute("select 1 as one", [], "get")).rejects.toMatchObject({ code: "unavailable", message: "too many queries are waiting; retry" });
    expect(await Promise.all(queued)).toEqual(Array.from({ length: MAX_WAITING_QUERIES }, () => ({ one: 1 })));
    expect(await tx.execute("select 1 as one", [], "get")).toEqual({ one: 1 });
    expect(db.queries).toMatchObject({ refused: 1 });
  });
});
