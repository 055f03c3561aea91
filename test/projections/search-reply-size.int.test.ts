/**
 * A SearchCatalog whose matches are too large for one reply: 30 active courses with descriptions of 10,000
 * emoji (40 KB each) made `{ text, limit: 100 }` an answer of 1.2 MB, refused as invalid_request — a valid
 * request refused for other people's data, which SearchCatalog (no pages) gave the caller no way to mend.
 * Now the reply holds as many of the best matches as fit, in rank order, in either encoding.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, postgresAvailable, query, startTestNerve, tempPostgres, until, type TempPostgres, type TestNerve } from "../support/index.js";

const pgAvailable = await postgresAvailable();

const COURSES = 30;
const MAX_PAYLOAD = 1024 * 1024;

let pg: TempPostgres | undefined;
const databases = [
  { name: "SQLite", available: true, env: async () => ({}) },
  { name: "PostgreSQL", available: pgAvailable, env: async () => ({ NERVE_DB: (pg = await tempPostgres()).url }) },
];

describe.each(databases)("SearchCatalog's reply on $name", ({ available, env }) => {
  let t: TestNerve;
  const search = async (body: Record<string, unknown>, json = false) => {
    const r = await query(t.client, "courses", "SearchCatalog", body, { json });
    return { ...r, ids: r.body.ok ? (r.body.result.items as { course_id: string }[]).map((i) => i.course_id) : undefined };
  };

  beforeAll(async () => {
    if (!available) return;
    t = await startTestNerve(await env());
    expect((await command(t.client, "policies", "CreatePolicy", "pol1", { name: "Std", type: "standard", refund_period_days: 14 })).body.ok).toBe(true);
    const description = "😀".repeat(10_000);
    for (let i = 0; i < COURSES; i++) {
      const r = await command(t.client, "courses", "CreateCourse", `sc${i}`, { title: `Searchable ${i}`, instructor_id: "i1", policy_id: "pol1", description });
      if (!r.body.ok) throw new Error(JSON.stringify(r.body));
    }
    await until("the search index has every course", async () => Number((await t.nerve.db.execute<{ n: number | string }>("select count(*) as n from search_documents where description <> ?", [""], "get")).n) === COURSES, 30_000);
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await pg?.drop();
    pg = undefined;
  });

  it.skipIf(!available)("answers limit 100 with the best matches that fit, in rank order, in both encodings", async () => {
    for (const json of [false, true]) {
      const r = await search({ text: "Searchable", limit: 100 }, json);
      expect(r.body.ok, JSON.stringify(r.body).slice(0, 300)).toBe(true);
      const n = r.ids!.length;
      // 40 KB each: about 25 fit in 1 MiB.
      expect(n).toBeGreaterThan(20);
      expect(n).toBeLessThan(COURSES);
      expect(new Set(r.ids).size).toBe(n);
      // The first n of the ranking: what a limit of n answers whole.
      expect((await search({ text: "Searchable", limit: n }, json)).ids).toEqual(r.ids);
      if (json) expect(Buffer.byteLength(JSON.stringify(r.body))).toBeLessThanOrEqual(MAX_PAYLOAD);
    }
  });

  it.skipIf(!available)("answers a list that fits whole, as before", async () => {
    for (const json of [false, true]) {
      expect((await search({ text: "Searchable" }, json)).ids).toHaveLength(20);
      expect((await search({ text: "Searchable", limit: 5 }, json)).ids).toHaveLength(5);
    }
  });
});
