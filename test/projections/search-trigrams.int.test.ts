/**
 * SearchCatalog on a real PostgreSQL reads trigram indexes (pg_trgm) instead of the whole of
 * search_documents, and a database where pg_trgm cannot be made still starts and searches, by scanning.
 */
import { EntitySchema } from "@mikro-orm/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Tx } from "../../src/consumers/index.js";
import { SEARCH_TRIGRAM_INDEXES, SearchDocumentSchema, courseRowProperties, search, searchCatalog } from "../../src/projections/index.js";
import { HAND_MADE_INDEXES, openDatabase, postgresSchemaUpdate, type Database } from "../../src/persistence/index.js";
import { captureLog, postgresAvailable, tempPostgres, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

/** `count` active courses with made-up words (deterministic), one of them with "zyxwvut" in its title. */
async function insertCourses(db: Database, count: number): Promise<void> {
  let a = 7;
  const rnd = () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 4294967296);
  const word = () => Array.from({ length: 4 + Math.floor(rnd() * 6) }, () => "abcdefghijklmnopqrstuvwxyz"[Math.floor(rnd() * 26)]).join("");
  const text = (n: number) => Array.from({ length: n }, word).join(" ");
  for (let i = 0; i < count; i += 500) {
    const rows: string[] = [];
    const values: unknown[] = [];
    for (let j = i; j < Math.min(count, i + 500); j++) {
      rows.push("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
      values.push(`c-${j}`, j === 1234 ? `Zyxwvut ${text(3)}` : text(4), text(30), 1000, "EUR", "i-1", "p-1", "active", 1, "2026-01-01T00:00:00.000Z");
    }
    await db.execute(`insert into search_documents (course_id, title, description, price_amount, price_currency, instructor_id, policy_id, status, version, updated_on) values ${rows.join(", ")}`, values, "run");
  }
}

/** The statement SearchCatalog sends for `text`, and its values. */
async function searchStatement(text: string): Promise<{ sql: string; params: unknown[] }> {
  let sent: { sql: string; params: unknown[] } | undefined;
  const recording: Tx = { dialect: "postgresql", execute: async (sql, params = []) => ((sent = { sql, params }), [] as never) };
  await searchCatalog(recording)({ text });
  return sent!;
}

const trigramIndexes = async (db: Database) =>
  (await db.execute<{ name: string }[]>("select indexname as name from pg_indexes where tablename = ? and indexname like ? order by 1", ["search_documents", "%trgm"], "all")).map((r) => r.name);

describe.skipIf(!available)("SearchCatalog on PostgreSQL", () => {
  let pg: TempPostgres;
  let db: Database;
  beforeEach(async () => {
    pg = await tempPostgres();
    db = await openDatabase({ url: pg.url, entities: [SearchDocumentSchema] });
  });
  afterEach(async () => {
    await db?.close();
    await pg?.drop();
  });

  it("reads the trigram indexes, not the whole table, over a few thousand courses", async () => {
    const log = captureLog();
    await insertCourses(db, 3000);
    await db.schemaChange((execute) => search({ logger: log.logger }).setup!({ dialect: "postgresql", execute }));
    // Made again at the next start: nothing to do, no error.
    await db.schemaChange((execute) => search({ logger: log.logger }).setup!({ dialect: "postgresql", execute }));
    await db.execute("analyze search_documents", [], "run");

    for (const text of ["zyxwvut", "zyxwvut programming"]) {
      const { sql, params } = await searchStatement(text);
      const plan = (await db.execute<{ "QUERY PLAN": string }[]>(`explain ${sql}`, params, "all")).map((r) => r["QUERY PLAN"]).join("\n");
      expect(plan).not.toMatch(/Seq Scan on search_documents/);
      expect(plan).toMatch(/Bitmap Index Scan on search_documents_title_trgm/);
      expect(plan).toMatch(/Bitmap Index Scan on search_documents_description_trgm/);
    }
    expect(await trigramIndexes(db)).toEqual(["search_documents_description_trgm", "search_documents_title_trgm"]);
    expect(Object.keys(SEARCH_TRIGRAM_INDEXES).sort()).toEqual(await trigramIndexes(db));
    expect(log.lines).toEqual([]);
    const found = await searchCatalog({ dialect: "postgresql", execute: (sql, params, method) => db.query(sql, params, method === "run" ? "all" : method) })({ text: "ZYXWVUT" });
    expect(found.items.map((i) => i.course_id)).toEqual(["c-1234"]);
  });

  it("keeps them at the next open: the schema update at start drops no index made by hand", async () => {
    await insertCourses(db, 200);
    await db.schemaChange((execute) => search({}).setup!({ dialect: "postgresql", execute }));
    await db.close();
    // Before, MikroORM's safe update dropped both (indexes it does not know), at every open: a start
    // of any role, the CLI's too, and one without consumers never made them again.
    db = await openDatabase({ url: pg.url, entities: [SearchDocumentSchema] });
    expect(await trigramIndexes(db)).toEqual(["search_documents_description_trgm", "search_documents_title_trgm"]);
    expect(await postgresSchemaUpdate(db.orm, HAND_MADE_INDEXES)).toBe("");
  });

  it("keeps them when the schema update at open alters their table: the rest of the update runs, their drops do not", async () => {
    await db.schemaChange((execute) => search({}).setup!({ dialect: "postgresql", execute }));
    await db.close();
    // A release that adds a column to search_documents: MikroORM's update alters the table, and (before)
    // dropped both indexes in the same statement list.
    const widened = new EntitySchema<any>({
      name: "SearchDocument",
      tableName: "search_documents",
      properties: {
        doc_id: { type: "integer", primary: true, autoincrement: true, fieldName: "doc_id" },
        course_id: { type: "string", length: 64, unique: true, fieldName: "course_id" },
        ...courseRowProperties,
        subtitle: { type: "string", length: 200, nullable: true, fieldName: "subtitle" },
      },
    });
    db = await openDatabase({ url: pg.url, entities: [widened] });
    const columns = await db.execute<{ c: string }[]>("select column_name as c from information_schema.columns where table_name = ? and column_name = ?", ["search_documents", "subtitle"], "all");
    expect(columns).toEqual([{ c: "subtitle" }]);
    expect(await trigramIndexes(db)).toEqual(["search_documents_description_trgm", "search_documents_title_trgm"]);
  });

  it("starts without them, with a warning, where pg_trgm cannot be made; the schema change goes on and searches scan", async () => {
    // An object of the extension's name already there: CREATE EXTENSION fails, as it does without the privilege.
    await db.execute("create function similarity(text, text) returns real language sql as 'select 0::real'", [], "run");
    await insertCourses(db, 2000);
    const log = captureLog();
    const after = await db.schemaChange(async (execute) => {
      await search({ logger: log.logger }).setup!({ dialect: "postgresql", execute });
      // The transaction is still usable after the refused statement.
      return execute<{ one: number }>("select 1 as one", [], "get");
    });
    expect(after).toEqual({ one: 1 });
    expect(await trigramIndexes(db)).toEqual([]);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatchObject({ level: 40, msg: expect.stringMatching(/no trigram indexes/) });
    const found = await searchCatalog({ dialect: "postgresql", execute: (sql, params, method) => db.query(sql, params, method === "run" ? "all" : method) })({ text: "zyxwvut" });
    expect(found.items.map((i) => i.course_id)).toEqual(["c-1234"]);
  });
});
