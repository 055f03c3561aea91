/**
 * Forgetting idempotency keys (IdempotencyPrune): a key older than the retention goes unless it is among
 * its aggregate's newest `keep`; a pass reads only the keys that aged in since the last one, in chunks;
 * its deletes take the write worker's exclusive turn. On SQLite and, where it runs, PostgreSQL.
 */
import { afterEach, describe, expect, it } from "vitest";
import { DELETE_SLICE, IdempotencyPrune, openDatabase, type Database, type ExclusiveWriter } from "../../src/persistence/index.js";
import { SqliteWriteWorker } from "../../src/persistence/sqlite-write-worker.js";
import { postgresAvailable, tempPostgres, tempSqlitePath } from "../support/index.js";

const available = await postgresAvailable();
const HOUR = 3600_000;
const T0 = Date.parse("2026-01-10T00:00:00.000Z");
const at = (hours: number) => new Date(T0 + hours * HOUR);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function sqlite(): Promise<Database> {
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}` });
  cleanups.push(tmp.cleanup, () => db.close());
  return db;
}

async function postgres(): Promise<Database> {
  const pg = await tempPostgres();
  cleanups.push(() => pg.drop());
  const db = await openDatabase({ url: pg.url });
  cleanups.push(() => db.close());
  return db;
}

/** Keys `names` of aggregate `id`, the n-th created `hours[n]` after T0. */
async function keys(db: Database, id: string, entries: [name: string, hours: number][]): Promise<void> {
  for (const [name, hours] of entries) {
    await db.execute("insert into nerve_idempotency (aggregate_type, aggregate_id, key, fingerprint, reply, created_on) values (?, ?, ?, ?, ?, ?)", ["User", id, name, "f", "{}", at(hours).toISOString()], "run");
  }
}

const left = async (db: Database, id: string) => (await db.execute<{ key: string }[]>("select key from nerve_idempotency where aggregate_id = ? order by key", [id], "all")).map((r) => r.key);

describe.each([
  ["SQLite", sqlite, false],
  ["PostgreSQL", postgres, !available],
] as const)("IdempotencyPrune on %s", (_name, open, skip) => {
  it.skipIf(skip)("forgets old keys beyond each aggregate's newest `keep`, keeps the rest, and reads only what aged in since", async () => {
    const db = await open();
    // keep 3, retention 24 h, chunks of 2 keys (so chunks split aggregates and the count's list is padded).
    const prune = new IdempotencyPrune({ db, retentionMs: 24 * HOUR, keep: 3, chunk: 2 });
    await keys(db, "busy", [["b1", 0], ["b2", 1], ["b3", 2], ["b4", 3], ["b5", 4], ["b6", 40]]);
    await keys(db, "few", [["f1", 0], ["f2", 1]]);
    await keys(db, "young", [["y1", 30], ["y2", 31], ["y3", 32], ["y4", 33]]);
    // At 48 h keys before 24 h are old: busy's b1–b3 are old and not among its newest three (b6, b5, b4).
    // Read in (created_on, aggregate, key) order, two at a time: [b1, f1] (busy is over: b1–b3 go), [f2, b4], [b5].
    const first = await prune.run(at(48));
    expect(await left(db, "busy")).toEqual(["b4", "b5", "b6"]);
    expect(await left(db, "few")).toEqual(["f1", "f2"]);
    expect(await left(db, "young")).toEqual(["y1", "y2", "y3", "y4"]);
    expect(first).toEqual({ examined: 5, over: 1, deleted: 3, chunks: 3 });
    // An hour later nothing aged in: nothing is read.
    expect(await prune.run(at(49))).toEqual({ examined: 0, over: 0, deleted: 0, chunks: 0 });
    // At 60 h young's four keys have aged in: it holds one more than it keeps, so its oldest goes.
    await keys(db, "few", [["f3", 50], ["f4", 51], ["f5", 52]]);
    expect(await prune.run(at(60))).toEqual({ examined: 4, over: 1, deleted: 1, chunks: 2 });
    // "few" kept its two old keys, then gained three: when those age in, its old excess goes too.
    expect(await prune.run(at(80))).toEqual({ examined: 4, over: 1, deleted: 2, chunks: 2 });
    expect(await left(db, "few")).toEqual(["f3", "f4", "f5"]);
    expect(await left(db, "young")).toEqual(["y2", "y3", "y4"]);
  });

  it.skipIf(skip)("forgets any key older than maxAgeMs, however few its aggregate holds (was: kept for ever under `keep`)", async () => {
    const db = await open();
    const DAY = 24 * HOUR;
    const prune = new IdempotencyPrune({ db, retentionMs: 24 * HOUR, keep: 1000, maxAgeMs: 30 * DAY });
    // 450 keys of one aggregate past 30 days (more than two slices), and keys within them.
    await db.execute(
      `insert into nerve_idempotency (aggregate_type, aggregate_id, key, fingerprint, reply, created_on) values ${Array.from({ length: 450 }, () => "(?, ?, ?, ?, ?, ?)").join(", ")}`,
      Array.from({ length: 450 }, (_, i) => ["User", "stale", `s${String(i).padStart(3, "0")}`, "f", "{}", at(i / 100).toISOString()]).flat(),
      "run",
    );
    await keys(db, "recent", [["r1", 35 * 24], ["r2", 39 * 24]]);
    await keys(db, "mixed", [["m-old", 5], ["m-new", 36 * 24]]);
    const r = await prune.run(at(40 * 24));
    expect(await left(db, "stale")).toEqual([]);
    expect(await left(db, "recent")).toEqual(["r1", "r2"]);
    expect(await left(db, "mixed")).toEqual(["m-new"]);
    expect(r).toMatchObject({ deleted: 451, expired: 451 });
  });
});

describe("IdempotencyPrune beside the write worker", () => {
  it("deletes a slice at a time, each in the worker's exclusive turn, and a stop ends the pass", async () => {
    const db = await sqlite();
    const worker = new SqliteWriteWorker(db, () => undefined);
    cleanups.push(() => worker.close());
    let turns = 0;
    const writer: ExclusiveWriter = {
      exclusive: <T>(fn: () => Promise<T>) => {
        turns++;
        return worker.exclusive(fn);
      },
    };
    await keys(db, "a", [["a1", 0], ["a2", 1], ["a3", 2]]);
    // "c" is 2 slices and a bit over: three statements, each a turn of its own.
    const many = DELETE_SLICE * 2 + 50;
    await keys(db, "c", Array.from({ length: many }, (_, i) => [`c${String(i).padStart(4, "0")}`, 3 + i / many] as [string, number]));
    const prune = new IdempotencyPrune({ db, writer, retentionMs: 24 * HOUR, keep: 1, chunk: 3 });
    const r = await prune.run(at(48));
    expect(r).toMatchObject({ over: 2, deleted: 2 + many - 1 });
    // And one for the keys past maxAgeMs (none here).
    expect(turns).toBe(1 + 3 + 1);
    expect([...(await left(db, "a")), ...(await left(db, "c"))]).toEqual(["a3", `c${String(many - 1).padStart(4, "0")}`]);
    await prune.stop();
    expect(await prune.run(at(100))).toEqual({ examined: 0, over: 0, deleted: 0, chunks: 0 });
  });
});
