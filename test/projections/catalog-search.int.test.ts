/** The catalog and search projections against a real SQLite file with FTS5. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueryDefinitions } from "../../contracts/index.js";
import { catalogCourse, ftsQueryOf, searchCatalog } from "../../src/projections/index.js";
import { envelope, openReadModels, type ReadModels } from "./fixtures.js";

let m: ReadModels;
const versions = new Map<string, number>();
const next = (id: string) => {
  versions.set(id, (versions.get(id) ?? 0) + 1);
  return versions.get(id)!;
};
const created = (id: string, title: string, policy_id = "p1") => envelope("CourseCreated", id, next(id), { course_id: id, title, instructor_id: "i1", policy_id });
const updated = (id: string, title: string, description: string, amount: number | null) =>
  envelope("CourseUpdated", id, next(id), { course_id: id, title, description, price: amount === null ? null : { amount, currency: "EUR" } });
const both = (...events: ReturnType<typeof envelope>[]) => Promise.all([m.handle("catalog", ...events), m.handle("search", ...events)]);
const ids = async (text: string, limit?: number) => (await searchCatalog(m.tx)(limit ? { text, limit } : { text })).items.map((i) => i.course_id);

beforeAll(async () => {
  m = await openReadModels();
  await both(
    created("c-ts", "TypeScript Deep Dive"),
    updated("c-ts", "TypeScript Deep Dive", "Generics, inference and the compiler API", 4900),
    created("c-cafe", "Café Français"),
    updated("c-cafe", "Café Français", "Ordering coffee in Paris", 1500),
    created("c-ts2", "TypeScript for Beginners"),
    created("c-old", "Legacy TypeScript"),
  );
  for (let i = 0; i < 30; i++) await both(created(`c-bulk-${i}`, `Bulk course number ${i}`));
});
afterAll(async () => {
  await m?.close();
});

describe("search", () => {
  it("finds active courses by every word, as prefixes, ignoring case and accents", async () => {
    expect(await ids("typescript")).toEqual(expect.arrayContaining(["c-ts", "c-ts2", "c-old"]));
    expect(await ids("TYPESCRIPT deep")).toEqual(["c-ts"]);
    expect(await ids("typ begin")).toEqual(["c-ts2"]);
    expect(await ids("cafe francais")).toEqual(["c-cafe"]);
    expect(await ids("coffee")).toEqual(["c-cafe"]);
    expect(await ids("compiler rust")).toEqual([]);
  });

  it("answers CatalogItems, best match first, with the default limit of 20 and a given limit", async () => {
    const result = await searchCatalog(m.tx)({ text: "deep dive" });
    expect(QueryDefinitions.SearchCatalog.result.safeParse(result).success).toBe(true);
    expect(result.items).toEqual([
      { course_id: "c-ts", title: "TypeScript Deep Dive", description: "Generics, inference and the compiler API", price: { amount: 4900, currency: "EUR" }, instructor_id: "i1", policy_id: "p1" },
    ]);
    expect(await ids("bulk")).toHaveLength(20);
    expect(await ids("bulk", 5)).toHaveLength(5);
    expect(await ids("bulk", 100)).toHaveLength(30);
  });

  it.each(['"', '""', "*", "-", "NEAR(", ")(", "a OR", "title:deep", "'; drop table search_documents; --", "^", "🙂", "AND AND", 'deep" OR "x', "x".repeat(200)])(
    "treats %j as plain text, never as FTS5 syntax",
    async (text) => {
      const result = await searchCatalog(m.tx)({ text });
      expect(Array.isArray(result.items)).toBe(true);
    },
  );

  it("quotes every word of the user's text", () => {
    expect(ftsQueryOf('deep "dive')).toBe('"deep"* """dive"*');
    expect(ftsQueryOf("  -- * ")).toBeNull();
    expect(ftsQueryOf("title:deep")).toBe('"title:deep"*');
  });

  it("drops a deprecated course from the index; a policy change is searchable at once", async () => {
    await both(envelope("CourseDeprecated", "c-old", next("c-old"), { course_id: "c-old", title: "Legacy TypeScript" }));
    expect(await ids("legacy")).toEqual([]);
    await both(envelope("CoursePolicyChanged", "c-ts2", next("c-ts2"), { course_id: "c-ts2", old_policy_id: "p1", new_policy_id: "p2" }));
    expect((await searchCatalog(m.tx)({ text: "beginners" })).items[0]?.policy_id).toBe("p2");
  });
});

describe("catalog", () => {
  it("keeps every course, deprecated ones included, with its latest values", async () => {
    expect(await catalogCourse(m.tx, "c-ts")).toMatchObject({ title: "TypeScript Deep Dive", price_amount: 4900, price_currency: "EUR", status: "active", version: 2 });
    expect(await catalogCourse(m.tx, "c-old")).toMatchObject({ status: "deprecated" });
    expect(await catalogCourse(m.tx, "c-ts2")).toMatchObject({ policy_id: "p2", status: "active" });
  });

  it("ignores an event older than what it shows, even without the inbox (a replay's overlap)", async () => {
    const newer = updated("c-cafe", "Café Français II", "More coffee", null);
    const older = envelope("CourseUpdated", "c-cafe", 2, { course_id: "c-cafe", title: "Café Français", description: "Ordering coffee in Paris", price: { amount: 1500, currency: "EUR" } });
    await both(newer);
    await m.tx.execute("delete from consumer_inbox", [], "run");
    await both(older);
    expect(await catalogCourse(m.tx, "c-cafe")).toMatchObject({ title: "Café Français II", price_amount: null, version: 3 });
    expect(await ids("paris")).toEqual([]);
    expect(await ids("more coffee")).toEqual(["c-cafe"]);
  });
});
