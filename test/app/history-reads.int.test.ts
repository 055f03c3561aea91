/**
 * How much of the event log one History reads. The audit's course of 8,000 events of 40 KB was read whole —
 * 8,001 rows parsed and a 323 MB answer encoded, RSS to 1.8 GB — before the answer was refused as too large
 * for one reply, and a page of 12 events read 1,001 rows (40 MB). Here 60 such events (2.4 MB): the rows read
 * add up to one reply, or one page, and an event more, on both databases; the answers themselves are as before.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HISTORY_PAGE } from "../../contracts/index.js";
import type { Database } from "../../src/persistence/index.js";
import { command, postgresAvailable, query, startTestNerve, tempPostgres, type TempPostgres, type TestNerve } from "../support/index.js";

const pgAvailable = await postgresAvailable();

/** Events of the large course: each CourseUpdated holds a description of 10,000 emoji, 40 KB. */
const UPDATES = 60;
const EVENT_BYTES = 40_000;
/** What one reply carries by default (the server's max_payload). */
const MAX_PAYLOAD = 1024 * 1024;

/** Counts the payload bytes of the event rows `db`'s queries hand back (what a History materialises). */
function countEventReads(db: Database): { bytes: number; rows: number } {
  const read = { bytes: 0, rows: 0 };
  const query = db.query.bind(db);
  (db as { query: Database["query"] }).query = async (sql, params, method) => {
    const out = await query(sql, params, method);
    if (/from nerve_events/.test(sql)) {
      for (const row of [out].flat() as { payload?: unknown }[]) {
        if (typeof row?.payload !== "string") continue;
        read.rows++;
        read.bytes += Buffer.byteLength(row.payload);
      }
    }
    return out;
  };
  return read;
}

let pg: TempPostgres | undefined;
const databases = [
  { name: "SQLite", available: true, env: async () => ({}) },
  { name: "PostgreSQL", available: pgAvailable, env: async () => ({ NERVE_DB: (pg = await tempPostgres()).url }) },
];

describe.each(databases)("History's reads on $name", ({ available, env }) => {
  let t: TestNerve;
  let read: { bytes: number; rows: number };
  const history = (body: Record<string, unknown>, json = false) => query(t.client, "audit", "History", { aggregate_type: "Course", ...body }, { json, timeout: 20_000 });

  beforeAll(async () => {
    if (!available) return;
    t = await startTestNerve(await env());
    expect((await command(t.client, "policies", "CreatePolicy", "pol1", { name: "Std", type: "standard", refund_period_days: 14 })).body.ok).toBe(true);
    for (const id of ["bigc", "smallc"]) expect((await command(t.client, "courses", "CreateCourse", id, { title: "Big", instructor_id: "i1", policy_id: "pol1" })).body.ok).toBe(true);
    for (let i = 0; i < UPDATES; i++) {
      const r = await command(t.client, "courses", "UpdateCourse", "bigc", { description: (i % 2 ? "😀" : "😁").repeat(10_000) });
      if (!r.body.ok) throw new Error(JSON.stringify(r.body));
    }
    expect((await command(t.client, "courses", "UpdateCourse", "smallc", { description: "short" })).body.ok).toBe(true);
    read = countEventReads(t.nerve.db);
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await pg?.drop();
    pg = undefined;
  });

  it.skipIf(!available)("refuses the whole history, naming the pages, having read about one reply of it", async () => {
    for (const json of [false, true]) {
      read.bytes = read.rows = 0;
      const r = await history({ aggregate_id: "bigc" }, json);
      expect(r.body.ok).toBe(false);
      expect(r.body.error.code).toBe("invalid_request");
      expect(r.body.error.message).toMatch(/^the answer to History is (\d+ bytes, )?more than one NATS message carries .*: ask for it in pages \(after_version, limit\)$/);
      // Was every row: 2.4 MB.
      expect(read.bytes, json ? "JSON" : "MessagePack").toBeLessThanOrEqual(MAX_PAYLOAD + 2 * EVENT_BYTES);
      expect(read.rows).toBeLessThan(UPDATES / 2);
    }
  });

  it.skipIf(!available)("reads a page's worth of rows for a page, and the pages still carry every event once", async () => {
    read.bytes = read.rows = 0;
    const first = await history({ aggregate_id: "bigc", limit: 1_000 });
    expect(first.body.ok).toBe(true);
    const n = first.body.result.events.length as number;
    expect(n).toBeGreaterThan(1);
    expect(first.body.result.next_after_version).toBe(n);
    // Was 61 rows, 2.4 MB, for 12 events.
    expect(read.bytes).toBeLessThanOrEqual(HISTORY_PAGE.maxBytes + 2 * EVENT_BYTES);
    expect(read.rows).toBeLessThanOrEqual(n + 1);

    const versions: number[] = [];
    for (let after: number | null = 0; after !== null; ) {
      const r = await history({ aggregate_id: "bigc", after_version: after, limit: 1_000 });
      versions.push(...(r.body.result.events as { aggregate_version: number }[]).map((e) => e.aggregate_version));
      expect(Buffer.byteLength(JSON.stringify(r.body.result.events))).toBeLessThanOrEqual(HISTORY_PAGE.maxBytes + EVENT_BYTES);
      after = r.body.result.next_after_version;
    }
    expect(versions).toEqual(Array.from({ length: UPDATES + 1 }, (_, i) => i + 1));
    // A limit that ends the page before the bytes do; an after_version past the end.
    expect((await history({ aggregate_id: "bigc", after_version: 3, limit: 2 })).body.result).toMatchObject({ events: [{ aggregate_version: 4 }, { aggregate_version: 5 }], next_after_version: 5 });
    expect((await history({ aggregate_id: "bigc", after_version: 59, limit: 2 })).body.result).toMatchObject({ events: [{ aggregate_version: 60 }, { aggregate_version: 61 }], next_after_version: null });
    expect((await history({ aggregate_id: "bigc", after_version: 61 })).body.result).toEqual({ events: [], next_after_version: null });
  });

  it.skipIf(!available)("answers a history that fits whole, in both encodings", async () => {
    for (const json of [false, true]) {
      const r = await history({ aggregate_id: "smallc" }, json);
      expect(r.body.ok).toBe(true);
      expect(Object.keys(r.body.result)).toEqual(["events"]);
      expect(r.body.result.events.map((e: { event_type: string; aggregate_version: number }) => [e.event_type, e.aggregate_version])).toEqual([
        ["CourseCreated", 1],
        ["CourseUpdated", 2],
      ]);
      expect(r.body.result.events[1].payload.description).toBe("short");
    }
  });
});
