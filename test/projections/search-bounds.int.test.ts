/**
 * What bounds one SearchCatalog's cost: a one-character word matched whole on SQLite, at most eight words
 * on both databases (the rest ignored, never refused: the contract takes any text of up to 200 characters),
 * and the FTS5 index with its prefix index — built anew, from search_documents, where an older one is found.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consumerEntities } from "../../src/consumers/index.js";
import { openDatabase } from "../../src/persistence/index.js";
import { SEARCH_FTS_DEFINITION, SEARCH_FTS_TABLE, SEARCH_FTS_TRIGGERS, SEARCH_MAX_WORDS, ftsQueryOf, readModelEntities, searchCatalog, searchTokens } from "../../src/projections/index.js";
import { postgresAvailable, tempPostgres, type TempPostgres } from "../support/index.js";
import { envelope, openReadModels, type ReadModels } from "./fixtures.js";

const pgAvailable = await postgresAvailable();

/** Courses, each created then given its description, through the search projection of `m`. */
async function addCourses(m: ReadModels, courses: [id: string, title: string, description: string][], version = 1): Promise<void> {
  for (const [course_id, title, description] of courses) {
    await m.handle(
      "search",
      envelope("CourseCreated", course_id, version, { course_id, title, instructor_id: "i1", policy_id: "p1" }),
      envelope("CourseUpdated", course_id, version + 1, { course_id, title, description, price: null }),
    );
  }
}

const ids = async (m: ReadModels, text: string) => (await searchCatalog(m.tx)({ text })).items.map((i) => i.course_id).sort();

describe("the FTS5 expression", () => {
  it("matches a word ending in a one-character term whole; any longer word, two letters too, as a prefix", () => {
    expect(ftsQueryOf("c programming")).toBe('"c" "programming"*');
    expect(ftsQueryOf("C++ c# R é node.js ai ty x-ab")).toBe('"C++" "c#" "R" "é" "node.js"* "ai"* "ty"* "x-ab"*');
  });

  it("keeps the first eight words of a longer text", () => {
    expect(SEARCH_MAX_WORDS).toBe(8);
    const hundred = Array.from({ length: 100 }, (_, i) => "abcdefghijklmnopqrstuvwxyz"[i % 26]).join(" ");
    expect(searchTokens(hundred)).toEqual(["a", "b", "c", "d", "e", "f", "g", "h"]);
    expect(ftsQueryOf(hundred)).toBe('"a" "b" "c" "d" "e" "f" "g" "h"');
    // Words that cannot match anything do not count.
    expect(searchTokens("-- one * two ! three four five six seven eight nine")).toEqual(["one", "two", "three", "four", "five", "six", "seven", "eight"]);
  });
});

let pg: TempPostgres | undefined;
const databases = [
  { name: "SQLite", available: true, url: async () => undefined },
  { name: "PostgreSQL", available: pgAvailable, url: async () => (pg = await tempPostgres()).url },
];

describe.each(databases)("SearchCatalog on $name", ({ name, available, url }) => {
  let m: ReadModels;
  beforeAll(async () => {
    if (!available) return;
    m = await openReadModels({ url: await url() });
    await addCourses(m, [
      ["c-lang", "C Programming", "Pointers and memory"],
      ["c-comp", "Compiler Programming", "Parsing and code generation"],
      ["c-r", "R for Statistics", "Data frames and plots"],
      ["c-ts", "TypeScript Deep Dive", "Generics and the compiler API"],
    ]);
  });
  afterAll(async () => {
    await m?.close();
    await pg?.drop();
  });

  it.skipIf(!available)("finds C Programming for 'c programming', R for Statistics for 'r', and words from two letters as prefixes", async () => {
    expect(await ids(m, "c programming")).toContain("c-lang");
    expect(await ids(m, "r statistics")).toEqual(["c-r"]);
    expect(await ids(m, "ty deep")).toEqual(["c-ts"]);
    expect(await ids(m, "point memo")).toEqual(["c-lang"]);
    // SQLite matches a one-letter word whole; PostgreSQL's ILIKE finds the letter anywhere (its algorithm, unchanged).
    if (name === "SQLite") expect(await ids(m, "c programming")).toEqual(["c-lang"]);
  });

  it.skipIf(!available)("counts the first eight words of a longer text and answers for the rest of it, never refuses", async () => {
    // Eight words that C Programming has, then one it has not: ignored.
    expect(await ids(m, "c programming pointers and memory c programming pointers zzz")).toEqual(["c-lang"]);
    // The same word as the eighth: it counts.
    expect(await ids(m, "c programming pointers and memory c programming zzz")).toEqual([]);
    const hundred = Array.from({ length: 100 }, (_, i) => "abcdefghijklmnopqrstuvwxyz"[i % 26]).join(" ");
    expect(Array.isArray((await searchCatalog(m.tx)({ text: hundred })).items)).toBe(true);
  });
});

describe("the FTS5 index of an existing database", () => {
  let m: ReadModels;
  const definition = async () => (await m.tx.execute<{ sql: string }>("select sql from sqlite_master where name = ?", [SEARCH_FTS_TABLE], "get")).sql;
  const indexed = async () => (await m.tx.execute<{ n: number }>(`select count(*) as n from ${SEARCH_FTS_TABLE}`, [], "get")).n;

  beforeAll(async () => {
    m = await openReadModels();
    await addCourses(m, [
      ["c-lang", "C Programming", "Pointers and memory"],
      ["c-ts", "TypeScript Deep Dive", "Generics and the compiler API"],
      ["c-old", "Legacy TypeScript", "Old things"],
    ]);
    await m.handle("search", envelope("CourseDeprecated", "c-old", 3, { course_id: "c-old", title: "Legacy TypeScript" }));
  });
  afterAll(async () => {
    await m?.close();
  });

  it("is rebuilt from search_documents when it has the definition from before the prefix index", async () => {
    // As a deployment before the prefix index has it.
    await m.tx.execute(`drop table ${SEARCH_FTS_TABLE}`, [], "run");
    await m.tx.execute(`create virtual table ${SEARCH_FTS_TABLE} using fts5(title, description, tokenize = 'unicode61 remove_diacritics 2')`, [], "run");
    await m.tx.execute(`insert into ${SEARCH_FTS_TABLE} (rowid, title, description) select doc_id, title, description from search_documents where status = 'active'`, [], "run");
    expect(await definition()).not.toContain("prefix");

    await m.subscriber("search").setup!(m.tx);
    expect(await definition()).toMatch(new RegExp(`using ${SEARCH_FTS_DEFINITION.replace(/[()]/g, "\\$&")}$`));
    expect(await indexed()).toBe(2);
    expect(await ids(m, "typescript")).toEqual(["c-ts"]);
    expect(await ids(m, "c pointers")).toEqual(["c-lang"]);
    // The triggers are back: the next event is indexed.
    await addCourses(m, [["c-new", "TypeScript Patterns", "Decorators"]]);
    expect(await ids(m, "typescript")).toEqual(["c-new", "c-ts"]);
  });

  it("is left alone by the schema update at open: MikroORM neither reads its table and triggers nor has a drop for them", async () => {
    // (On PostgreSQL the trigram indexes are indexes of search_documents, which that update dropped: search-trigrams.int.)
    expect((await m.db.orm.schema.getUpdateSchemaSQL({ safe: true })).trim()).toBe("");
    const again = await openDatabase({ url: `sqlite:${m.db.sqliteFile!.path}`, entities: [...consumerEntities, ...readModelEntities] });
    try {
      const names = [SEARCH_FTS_TABLE, ...Object.keys(SEARCH_FTS_TRIGGERS)];
      const found = await again.execute<{ name: string }[]>(`select name from sqlite_master where name in (${names.map(() => "?").join(", ")}) order by name`, names, "all");
      expect(found.map((r) => r.name)).toEqual([...names].sort());
    } finally {
      await again.close();
    }
  });

  it("is rebuilt when a start stopped half-way (a trigger missing), and left alone when whole", async () => {
    await m.tx.execute(`delete from ${SEARCH_FTS_TABLE}`, [], "run");
    await m.tx.execute(`drop trigger ${Object.keys(SEARCH_FTS_TRIGGERS)[2]}`, [], "run");
    await m.subscriber("search").setup!(m.tx);
    expect(await indexed()).toBe(3);
    expect(await ids(m, "typescript")).toEqual(["c-new", "c-ts"]);

    // A row no document has: a rebuild would drop it, so it shows that a whole index is not rebuilt.
    await m.tx.execute(`insert into ${SEARCH_FTS_TABLE} (rowid, title, description) values (999999, 'sentinel', '')`, [], "run");
    await m.subscriber("search").setup!(m.tx);
    expect(await indexed()).toBe(4);
  });
});
