/**
 * A replay's reset (resetReadModel): the read model and the projection's inbox emptied in one transaction —
 * with the SQLite write worker, on its thread, so that a large read model's whole-table delete no longer
 * stands the event loop still; without it, on the main connection. Either way all or nothing.
 */
import { describe, expect, it } from "vitest";
import { consumerEntities } from "../../src/consumers/index.js";
import { resetReadModel } from "../../src/consumers/read-model-reset.js";
import type { Subscriber } from "../../src/consumers/index.js";
import type { Database } from "../../src/persistence/index.js";
import { SqliteWriteWorker } from "../../src/persistence/sqlite-write-worker.js";
import { CatalogCourseSchema, catalog } from "../../src/projections/catalog.js";
import { useSqliteDatabase } from "../support/index.js";

let db: Database;

/** Fills catalog_courses with `rows` courses and the inbox with `rows` of `catalog`'s and 10 of `search`'s. */
async function seed(rows: number): Promise<void> {
  await db.execute("delete from catalog_courses", [], "run");
  await db.execute("delete from consumer_inbox", [], "run");
  const series = "with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)";
  await db.execute(
    `${series} insert into catalog_courses (course_id, title, description, price_amount, price_currency, instructor_id, policy_id, status, version, updated_on)
     select 'c-' || i, 'Course ' || i, 'A course about the number ' || i || ' and what follows it', 1900, 'EUR', 'ins-1', 'pol-1', 'active', 1, '2026-12-05T00:00:00.000Z' from n`,
    [rows],
    "run",
  );
  await db.execute(`${series} insert into consumer_inbox (consumer, event_id, handled_on) select 'catalog', 'e-' || i, '2026-12-05T00:00:00.000Z' from n`, [rows], "run");
  await db.execute(`${series} insert into consumer_inbox (consumer, event_id, handled_on) select 'search', 'e-' || i, '2026-12-05T00:00:00.000Z' from n`, [10], "run");
}

async function counts(): Promise<{ courses: number; catalogInbox: number; searchInbox: number }> {
  const one = async (sql: string) => Number((await db.execute<{ n: number }>(sql, [], "get")).n);
  return {
    courses: await one("select count(*) as n from catalog_courses"),
    catalogInbox: await one("select count(*) as n from consumer_inbox where consumer = 'catalog'"),
    searchInbox: await one("select count(*) as n from consumer_inbox where consumer = 'search'"),
  };
}

/** Runs `work` with a 2 ms interval beside it; resolves with how often it ticked before `work` ended. */
async function ticksDuring(work: () => Promise<void>): Promise<number> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 2);
  try {
    await work();
    return ticks;
  } finally {
    clearInterval(timer);
  }
}

/** The catalog, whose reset deletes its rows and then fails: nothing of it may stay deleted. */
const failingReset: Subscriber = {
  ...catalog(),
  async reset(tx) {
    await tx.execute("delete from catalog_courses", [], "run");
    await tx.execute("delete from no_such_table", [], "run");
  },
};

describe("a replay's reset of a read model", () => {
  useSqliteDatabase((d) => (db = d), [CatalogCourseSchema, ...consumerEntities]);

  it("empties a large read model and its inbox on the write worker's thread while the event loop runs on, and on the main connection without one", async () => {
    const rows = 300_000;
    await seed(rows);
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, "thread");
    let onWorker: number;
    try {
      // The worker's thread started and its statements prepared before the clock matters.
      await worker.applyConsumerBatch({ inbox: [], events: [] });
      onWorker = await ticksDuring(() => resetReadModel(db, catalog(), worker));
    } finally {
      await worker.close();
    }
    expect(await counts()).toEqual({ courses: 0, catalogInbox: 0, searchInbox: 10 });

    // The same reset on the main connection (PostgreSQL's path; SQLite's before the worker took it) holds the loop.
    await seed(rows);
    const onMain = await ticksDuring(() => resetReadModel(db, catalog()));
    expect(await counts()).toEqual({ courses: 0, catalogInbox: 0, searchInbox: 10 });
    // Deleting 300,000 rows and their inbox takes far longer than 2 ms × 10; on the main thread the interval
    // can only tick in the few turns between statements.
    expect(onWorker).toBeGreaterThanOrEqual(10);
    expect(onMain).toBeLessThan(onWorker);
  }, 120_000);

  it.each(["thread", "inline", "none"] as const)("deletes nothing when a statement of the reset fails (writer: %s)", async (where) => {
    await seed(1_000);
    const worker = where === "none" ? undefined : new SqliteWriteWorker(db, () => undefined, undefined, where);
    try {
      await expect(resetReadModel(db, failingReset, worker)).rejects.toThrow(/no such table: no_such_table/);
    } finally {
      await worker?.close();
    }
    expect(await counts()).toEqual({ courses: 1_000, catalogInbox: 1_000, searchInbox: 10 });
  }, 30_000);

  it("refuses a reset that reads where it runs on the worker, and deletes nothing", async () => {
    await seed(100);
    const reading: Subscriber = {
      ...catalog(),
      async reset(tx) {
        await tx.execute("select count(*) from catalog_courses", [], "get");
      },
    };
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, "thread");
    try {
      await expect(resetReadModel(db, reading, worker)).rejects.toThrow(/consumer catalog may only delete in its reset, but it read: select count/);
    } finally {
      await worker.close();
    }
    expect(await counts()).toEqual({ courses: 100, catalogInbox: 100, searchInbox: 10 });
  }, 30_000);
});
