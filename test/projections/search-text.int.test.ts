/**
 * SearchCatalog finds a course by the text of its own title as written — a ligature, full-width letters, a
 * decomposed accent — and, on PostgreSQL, by a word with punctuation around it, as FTS5 does on SQLite
 * (read-model audit: none of these was found). Real SQLite with FTS5 and real PostgreSQL.
 */
import { describe, expect, it } from "vitest";
import { likePatternsOf, searchCatalog } from "../../src/projections/index.js";
import { postgresAvailable } from "../support/index.js";
import { envelope, readModelsFor } from "./fixtures.js";

const available = await postgresAvailable();

const COURSES = {
  lig: "E\uFB03cient Algorithms",
  full: "\uFF30\uFF59\uFF54\uFF48\uFF4F\uFF4E Intro",
  nfd: "Cafe\u0301 Basics",
  plain: "Rust Ownership",
};

describe.each([
  ["SQLite", false, false],
  ["PostgreSQL", true, !available],
] as const)("SearchCatalog by a title's own text (%s)", (_name, pg, skip) => {
  it.skipIf(skip)("finds each course by its title as written, a decomposed one by its composed spelling too, and a word with punctuation around it", async () => {
    const m = await readModelsFor(pg);
    for (const [id, title] of Object.entries(COURSES)) await m.handle("search", envelope("CourseCreated", id, 1, { course_id: id, title, instructor_id: "i1", policy_id: "p1" }));
    const ids = async (text: string) => (await searchCatalog(m.tx)({ text })).items.map((i) => i.course_id);
    expect(await ids(COURSES.lig)).toEqual(["lig"]);
    expect(await ids("E\uFB03ci")).toEqual(["lig"]);
    expect(await ids(COURSES.full)).toEqual(["full"]);
    expect(await ids(COURSES.nfd)).toEqual(["nfd"]);
    expect(await ids("Café Basics")).toEqual(["nfd"]);
    for (const text of ["rust:", '"rust"', "rust*", "-rust", "^rust", "(rust)", "rust,"]) expect(await ids(text), text).toEqual(["plain"]);
  });
});

describe("likePatternsOf", () => {
  it("drops the marks around a word but + and #, and gives both forms of a decomposable word", () => {
    expect(likePatternsOf('"rust":')).toEqual(["%rust%"]);
    expect(likePatternsOf("c++")).toEqual(["%c++%"]);
    expect(likePatternsOf("c#:")).toEqual(["%c#%"]);
    expect(likePatternsOf("node.js")).toEqual(["%node.js%"]);
    expect(likePatternsOf("50%")).toEqual(["%50%"]);
    expect(likePatternsOf("Café")).toEqual(["%Café%", "%Cafe\u0301%"]);
  });
});
