/**
 * The version-guarded read models (catalog, search, learner-progress) end in the rows stream order gives,
 * whatever order an aggregate's events reach them in — the creation or grant included, which a consumer
 * taken over can receive after a later event of its aggregate (stop 50's audit: the later event found no row
 * and was lost, and the creation then wrote its older values for good). Real SQLite, and PostgreSQL when
 * one answers.
 */
import { describe, expect, it } from "vitest";
import { deriveAccessId, type EnvelopeBase } from "../../contracts/index.js";
import { catalogCourse, getLearnerProgress, searchCatalog } from "../../src/projections/index.js";
import { envelope, readModelsFor, type ReadModels } from "./fixtures.js";
import { postgresAvailable } from "../support/index.js";

/** Every order of `items` (Heap's algorithm). */
function permutations<T>(items: T[]): T[][] {
  const out: T[][] = [];
  const a = [...items];
  const c = new Array<number>(a.length).fill(0);
  out.push([...a]);
  for (let i = 1; i < a.length; ) {
    if (c[i]! < i) {
      const j = i % 2 === 0 ? 0 : c[i]!;
      [a[j], a[i]] = [a[i]!, a[j]!];
      out.push([...a]);
      c[i]!++;
      i = 1;
    } else c[i++] = 0;
  }
  return out;
}

/** A deterministic pick of `n` of `all` (the same every run), the stream order among them. */
const sample = <T>(all: T[], n: number): T[] => (all.length <= n ? all : [all[0]!, ...Array.from({ length: n - 1 }, (_, k) => all[1 + Math.floor(((k * 7919) % (all.length - 1)))]!)]);

/** A course's life: created, edited, moved to another policy, edited again (and, with `deprecate`, deprecated). */
function courseLife(id: string, deprecate: boolean): EnvelopeBase[] {
  const events = [
    envelope("CourseCreated", id, 1, { course_id: id, title: "Quantum Basics", instructor_id: "i-1", policy_id: "p-1" }),
    envelope("CourseUpdated", id, 2, { course_id: id, title: "Quantum Basics", description: "Qubits and gates", price: { amount: 4900, currency: "EUR" } }),
    envelope("CoursePolicyChanged", id, 3, { course_id: id, old_policy_id: "p-1", new_policy_id: "p-2" }),
    envelope("CourseUpdated", id, 4, { course_id: id, title: "Entanglement Workshop", description: "Bell pairs", price: null }),
  ];
  if (deprecate) events.push(envelope("CourseDeprecated", id, 5, { course_id: id, title: "Entanglement Workshop" }));
  return events;
}

/**
 * An access record's life: granted, some progress, revoked, granted again (keeping progress) and, with
 * `finish`, finished; without, its progress is the first grant's (which a re-grant that came first hid).
 */
function accessLife(u: string, finish = true): EnvelopeBase[] {
  const access = { access_id: deriveAccessId(u, "c-1"), user_id: u, course_id: "c-1" };
  const id = access.access_id;
  const life = [
    envelope("CourseAccessGranted", id, 1, { ...access, expires_at: "2027-01-01T00:00:00.000Z", order_id: "o-1" }),
    envelope("ProgressUpdated", id, 2, { ...access, progress: 40 }),
    envelope("AccessRevoked", id, 3, { ...access, reason: "order_refunded" }),
    envelope("CourseAccessGranted", id, 4, { ...access, expires_at: "2028-01-01T00:00:00.000Z", order_id: "o-2" }),
  ];
  if (finish) life.push(envelope("ProgressUpdated", id, 5, { ...access, progress: 100 }), envelope("CourseCompleted", id, 6, { ...access }));
  return life;
}

/** One read model's row of `id` without its key columns (the search document's rowid differs by arrival). */
async function rowOf(m: ReadModels, table: string, key: string, id: string): Promise<Record<string, unknown>> {
  const [row] = (await m.tx.execute<Record<string, unknown>[]>(`select * from ${table} where ${key} = ?`, [id], "all")).map((r) => ({ ...r }));
  expect(row, `${table} has ${id}`).toBeDefined();
  for (const k of [key, "doc_id", "user_id"]) delete row![k];
  // PostgreSQL answers bigint columns as strings.
  for (const [k, v] of Object.entries(row!)) if (typeof v === "string" && /^\d+$/.test(v) && k !== "course_id") row![k] = Number(v);
  return row!;
}

const ids = async (m: ReadModels, text: string) => (await searchCatalog(m.tx)({ text, limit: 100 })).items.map((i) => i.course_id).sort();

describe.each([false, true])("applied in any order (postgres: %s)", (pg) => {
  it("catalog and search end in stream order's rows; a course whose creation has not come is in neither's answers", async () => {
    if (pg && !(await postgresAvailable())) return;
    const m = await readModelsFor(pg);
    const orders = (deprecate: boolean) => sample(permutations(courseLife("x", deprecate).map((_, i) => i)), pg ? 12 : 120);
    const cases = [...orders(false).map((o) => ({ o, deprecate: false })), ...orders(true).map((o) => ({ o, deprecate: true }))];
    const lives = new Map<string, EnvelopeBase[]>();
    for (const [n, { o, deprecate }] of cases.entries()) {
      const id = `c-${deprecate ? "d" : "a"}-${n}`;
      const life = courseLife(id, deprecate);
      lives.set(id, life);
      const arriving = o.map((i) => life[i]!);
      const creation = arriving.findIndex((e) => e.event_type === "CourseCreated");
      for (const name of ["catalog", "search"]) expect(await m.handle(name, ...arriving.slice(0, creation))).toEqual(arriving.slice(0, creation).map(() => "handled"));
      if (creation > 0) {
        // Before its creation: kept (with what came), but neither found nor shown as a course.
        expect(await catalogCourse(m.tx, id)).toMatchObject({ status: deprecate && arriving.slice(0, creation).some((e) => e.event_type === "CourseDeprecated") ? "deprecated" : "pending", instructor_id: "" });
        expect(await ids(m, "entanglement")).not.toContain(id);
      }
      for (const name of ["catalog", "search"]) await m.handle(name, ...arriving.slice(creation));
    }
    // The reference: each life in stream order.
    for (const deprecate of [false, true]) {
      const id = `c-${deprecate ? "d" : "a"}-ref`;
      for (const name of ["catalog", "search"]) await m.handle(name, ...courseLife(id, deprecate));
    }
    const reference = { a: { catalog: await rowOf(m, "catalog_courses", "course_id", "c-a-ref"), search: await rowOf(m, "search_documents", "course_id", "c-a-ref") }, d: { catalog: await rowOf(m, "catalog_courses", "course_id", "c-d-ref"), search: await rowOf(m, "search_documents", "course_id", "c-d-ref") } };
    expect(reference.a.catalog).toMatchObject({ title: "Entanglement Workshop", description: "Bell pairs", price_amount: null, instructor_id: "i-1", policy_id: "p-2", status: "active", version: 4 });
    expect(reference.d.catalog).toMatchObject({ status: "deprecated", version: 5 });
    for (const [n, { deprecate }] of cases.entries()) {
      const id = `c-${deprecate ? "d" : "a"}-${n}`;
      const ref = deprecate ? reference.d : reference.a;
      // Each life has times of its own: the row's is its latest event's.
      const updated_on = lives.get(id)!.at(-1)!.occurred_on;
      expect({ id, row: await rowOf(m, "catalog_courses", "course_id", id) }).toEqual({ id, row: { ...ref.catalog, updated_on } });
      expect({ id, row: await rowOf(m, "search_documents", "course_id", id) }).toEqual({ id, row: { ...ref.search, updated_on } });
    }
    // Found by its latest title only, and only while not deprecated.
    const active = [...cases.entries()].filter(([, c]) => !c.deprecate).map(([n]) => `c-a-${n}`);
    expect(await ids(m, "entanglement")).toEqual([...active, "c-a-ref"].sort());
    expect(await ids(m, "quantum")).toEqual([]);
  });

  it("learner-progress ends in stream order's record; a record no grant has reached is not in GetLearnerProgress", async () => {
    if (pg && !(await postgresAvailable())) return;
    const m = await readModelsFor(pg);
    const orders = sample(permutations(accessLife("x").map((_, i) => i)), pg ? 24 : 240);
    for (const [n, o] of orders.entries()) {
      const life = accessLife(`u-${n}`);
      const arriving = o.map((i) => life[i]!);
      const grant = arriving.findIndex((e) => e.event_type === "CourseAccessGranted");
      await m.handle("learner-progress", ...arriving.slice(0, grant));
      expect((await getLearnerProgress(m.tx)({ user_id: `u-${n}` })).items).toEqual([]);
      await m.handle("learner-progress", ...arriving.slice(grant));
    }
    await m.handle("learner-progress", ...accessLife("u-ref"));
    const reference = (await getLearnerProgress(m.tx)({ user_id: "u-ref" })).items;
    expect(reference).toEqual([expect.objectContaining({ status: "active", progress: 100, completed: true, expires_at: "2028-01-01T00:00:00.000Z", order_id: "o-2", version: 6 })]);
    const referenceRow = await rowOf(m, "learner_access", "access_id", deriveAccessId("u-ref", "c-1"));
    for (const [n] of orders.entries()) {
      const u = `u-${n}`;
      expect({ u, items: (await getLearnerProgress(m.tx)({ user_id: u })).items }).toEqual({ u, items: reference.map((r) => ({ ...r, user_id: u, access_id: deriveAccessId(u, "c-1") })) });
      expect({ u, row: await rowOf(m, "learner_access", "access_id", deriveAccessId(u, "c-1")) }).toEqual({ u, row: referenceRow });
    }
    // Unfinished: the progress is the first grant's, also where the re-grant came before it.
    for (const [n, o] of permutations([0, 1, 2, 3]).entries()) {
      const life = accessLife(`v-${n}`, false);
      await m.handle("learner-progress", ...o.map((i) => life[i]!));
      expect({ n, items: (await getLearnerProgress(m.tx)({ user_id: `v-${n}` })).items }).toEqual({ n, items: [expect.objectContaining({ status: "active", progress: 40, completed: false, order_id: "o-2", version: 4 })] });
    }
  });
});
