/**
 * Retrying a dead letter of a version-guarded projection (catalog, search, learner-progress). Once an event
 * is parked the runner goes on with the later events of its aggregate, which raise the row's version: the
 * retried event's guard then matched no row, and the retry answered `handled` and deleted the letter while
 * the read model never took it. Now each group of columns keeps the version of the event that last set
 * it, so a retry applies whatever no later event replaced; a retry the read model cannot take (its row is
 * absent, or kept no such versions) is answered `stale`, rolled back, and the letter stays.
 */
import { describe, expect, it } from "vitest";
import { isNerveError, type EnvelopeBase } from "../../contracts/index.js";
import { DEAD_LETTER_PAGE, DeadLetters, EventHandler } from "../../src/consumers/index.js";
import { catalogCourse, searchCatalog } from "../../src/projections/index.js";
import { postgresAvailable } from "../support/index.js";
import { envelope, readModelsFor, type ReadModels } from "../projections/fixtures.js";

const available = await postgresAvailable();

/** Parks `e` as the runner does after its attempts: the envelope as JSON. */
async function park(m: ReadModels, consumer: string, e: EnvelopeBase, seq: number): Promise<number> {
  const dl = new DeadLetters(m.db);
  await dl.add({ consumer, stream: "EVENTS_COURSES", stream_seq: seq, event_id: e.event_id, event_type: e.event_type, envelope: JSON.stringify(e), reason: "boom", attempts: 5 });
  return (await dl.list(consumer)).find((l) => l.event_id === e.event_id)!.id;
}

const retry = (m: ReadModels, consumer: string, id: number) => new DeadLetters(m.db).retry(id, new Map([[consumer, new EventHandler(m.db, m.subscriber(consumer))]]));
const inboxHas = async (m: ReadModels, consumer: string, e: EnvelopeBase) =>
  (await m.db.execute<unknown[]>("select 1 as x from consumer_inbox where consumer = ? and event_id = ?", [consumer, e.event_id], "all")).length > 0;

const created = envelope("CourseCreated", "c1", 1, { course_id: "c1", title: "Old title", instructor_id: "i1", policy_id: "p1" });
const updated = envelope("CourseUpdated", "c1", 2, { course_id: "c1", title: "New title", description: "d", price: { amount: 100, currency: "EUR" } });
const moved = envelope("CoursePolicyChanged", "c1", 3, { course_id: "c1", old_policy_id: "p1", new_policy_id: "p2" });

describe.each([
  ["SQLite", false, false],
  ["PostgreSQL", true, !available],
] as const)("a dead letter retried after later events of its aggregate (%s)", (_name, pg, skip) => {
  it.skipIf(skip)("CourseUpdated after a CoursePolicyChanged: its title is applied, the later policy stays, the letter leaves (catalog and search)", async () => {
    const m = await readModelsFor(pg);
    for (const consumer of ["catalog", "search"]) {
      await m.handle(consumer, created);
      const id = await park(m, consumer, updated, 2);
      await m.handle(consumer, moved);

      expect(await retry(m, consumer, id), consumer).toBe("handled");

      const [row] = await m.rows(consumer === "catalog" ? "catalog_courses" : "search_documents", "course_id");
      expect(row, consumer).toMatchObject({ title: "New title", description: "d", price_currency: "EUR", policy_id: "p2", status: "active" });
      expect(Number(row.version), consumer).toBe(3);
      expect(await new DeadLetters(m.db).list(consumer), consumer).toEqual([]);
    }
    // SearchCatalog finds it by the retried title (SQLite: through the FTS5 triggers).
    expect((await searchCatalog(m.tx)({ text: "New title" })).items.map((i) => i.course_id)).toEqual(["c1"]);
  });

  it.skipIf(skip)("ProgressUpdated after an AccessRevoked: the progress is applied, the record stays revoked, the letter leaves (learner-progress)", async () => {
    const m = await readModelsFor(pg);
    const id = "acc_0123456789abcdef0123456789abcdef";
    const granted = envelope("CourseAccessGranted", id, 1, { access_id: id, user_id: "u1", course_id: "c1", expires_at: null, order_id: null });
    const progressed = envelope("ProgressUpdated", id, 2, { access_id: id, user_id: "u1", course_id: "c1", progress: 40 });
    const revoked = envelope("AccessRevoked", id, 3, { access_id: id, user_id: "u1", course_id: "c1", reason: "refund" });
    await m.handle("learner-progress", granted);
    const letter = await park(m, "learner-progress", progressed, 2);
    await m.handle("learner-progress", revoked);

    expect(await retry(m, "learner-progress", letter)).toBe("handled");

    const [row] = await m.rows("learner_access", "access_id");
    expect(row).toMatchObject({ status: "revoked", progress: 40 });
    expect(Number(row.version)).toBe(3);
    expect(await new DeadLetters(m.db).list("learner-progress")).toEqual([]);
  });

  it.skipIf(skip)("a CourseUpdated of a course the catalog has no row of is handled onto a pending row (was: stale), which its creation retried later fills in", async () => {
    const m = await readModelsFor(pg);
    const creation = await park(m, "catalog", created, 1);
    const update = await park(m, "catalog", updated, 2);

    expect(await retry(m, "catalog", update)).toBe("handled");
    expect(await inboxHas(m, "catalog", updated)).toBe(true);
    expect(await catalogCourse(m.tx, "c1")).toMatchObject({ title: "New title", status: "pending", instructor_id: "" });
    expect((await new DeadLetters(m.db).list("catalog")).map((l) => l.id)).toEqual([creation]);

    expect(await retry(m, "catalog", creation)).toBe("handled");
    expect(await catalogCourse(m.tx, "c1")).toMatchObject({ title: "New title", description: "d", price_amount: 100, status: "active", instructor_id: "i1", policy_id: "p1", version: 2 });
    expect(await new DeadLetters(m.db).list("catalog")).toEqual([]);
  });

  it.skipIf(skip)("a letter whose event breaks the contract, or holds a version past 2^31 − 1, is refused rule_violated on retry and stays (was: internal, logged; or invalid_request blaming the request)", async () => {
    const m = await readModelsFor(pg);
    const id = "acc_0123456789abcdef0123456789abcdee";
    const granted = envelope("CourseAccessGranted", id, 1, { access_id: id, user_id: "u1", course_id: "c1", expires_at: null, order_id: null });
    await m.handle("learner-progress", granted);
    const extraKey = { ...envelope("ProgressUpdated", id, 2, { access_id: id, user_id: "u1", course_id: "c1", progress: 40 }), payload: { access_id: id, user_id: "u1", course_id: "c1", progress: 40, junk: 1 } };
    const farVersion = envelope("ProgressUpdated", id, 2 ** 31, { access_id: id, user_id: "u1", course_id: "c1", progress: 50 });
    for (const [i, e] of [extraKey, farVersion].entries()) {
      const letter = await park(m, "learner-progress", e as EnvelopeBase, 10 + i);
      const refused = await retry(m, "learner-progress", letter).catch((err: unknown) => err);
      // SQLite's integers are 64-bit: the far version is taken there (the read model's own guard applies it).
      if (e === farVersion && !pg) continue;
      expect(isNerveError(refused, "rule_violated"), String(refused)).toBe(true);
      expect((await new DeadLetters(m.db).list("learner-progress")).map((l) => l.id)).toContain(letter);
    }
  });

  it.skipIf(skip)("a letter too large for a page alone is listed without its envelope, with its size, and the letters after it are listed too (was: every listing internal, for good)", async () => {
    const m = await readModelsFor(pg);
    const dl = new DeadLetters(m.db);
    // 400 KB of control characters: six bytes each as JSON, 2.4 MB, over a page's 256 KiB and the server's max_payload.
    const huge = { ...updated, payload: { ...(updated.payload as object), junk: "\u0001".repeat(400_000) } };
    const first = await park(m, "catalog", huge as EnvelopeBase, 1);
    const second = await park(m, "catalog", created, 2);
    const page = await dl.page({});
    expect(page.items.map((l) => l.id)).toEqual([first, second]);
    expect(page.items[0]).toMatchObject({ envelope: null, event_id: huge.event_id });
    expect(page.items[0]!.envelope_omitted_bytes).toBeGreaterThan(2_400_000);
    expect(page.items[1]!.envelope).toMatchObject({ event_id: created.event_id });
    expect(Buffer.byteLength(JSON.stringify(page))).toBeLessThan(DEAD_LETTER_PAGE.maxBytes + 1024);
  });

  it.skipIf(skip)("a row from before the per-group versions, moved past the letter's event, is stale: it cannot tell what the retry would overwrite", async () => {
    const m = await readModelsFor(pg);
    await m.handle("catalog", created);
    const id = await park(m, "catalog", updated, 2);
    await m.handle("catalog", moved);
    // As a row written before the columns existed: only its `version` is known.
    await m.db.execute("update catalog_courses set details_version = null, status_version = null, policy_version = null", [], "run");

    expect(await retry(m, "catalog", id)).toBe("stale");

    expect(await catalogCourse(m.tx, "c1")).toMatchObject({ title: "Old title", policy_id: "p2", version: 3 });
    expect(await inboxHas(m, "catalog", updated)).toBe(false);
    expect((await new DeadLetters(m.db).list("catalog")).map((l) => l.id)).toEqual([id]);
  });
});

describe("a row's events applied in any order after its creation", () => {
  it("give the row the aggregate's own fold gives: each group of columns holds its latest event's values", async () => {
    const m = await readModelsFor(false);
    const later = [
      envelope("CourseUpdated", "c9", 2, { course_id: "c9", title: "Two", description: "two", price: null }),
      envelope("CoursePolicyChanged", "c9", 3, { course_id: "c9", old_policy_id: "p1", new_policy_id: "p3" }),
      envelope("CourseUpdated", "c9", 4, { course_id: "c9", title: "Four", description: "four", price: { amount: 4, currency: "EUR" } }),
      envelope("CourseDeprecated", "c9", 5, { course_id: "c9", title: "Four" }),
    ];
    const orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
    for (const order of orders) {
      await m.db.execute("delete from catalog_courses", [], "run");
      await m.db.execute("delete from consumer_inbox", [], "run");
      await m.handle("catalog", envelope("CourseCreated", "c9", 1, { course_id: "c9", title: "One", instructor_id: "i1", policy_id: "p1" }));
      for (const i of order) await m.handle("catalog", later[i]!);
      expect(await catalogCourse(m.tx, "c9"), String(order)).toMatchObject({ title: "Four", description: "four", price_amount: 4, policy_id: "p3", status: "deprecated", version: 5 });
    }
  });

  it("give the learner's access record the aggregate's fold gives: a re-grant's expiry and order, the latest progress, the completion", async () => {
    const m = await readModelsFor(false);
    const id = "acc_fedcba9876543210fedcba9876543210";
    const access = { access_id: id, user_id: "u9", course_id: "c9" };
    const later = [
      envelope("ProgressUpdated", id, 2, { ...access, progress: 30 }),
      envelope("AccessRevoked", id, 3, { ...access, reason: "refund" }),
      envelope("CourseAccessGranted", id, 4, { ...access, expires_at: "2027-01-01T00:00:00.000Z", order_id: "o2" }),
      envelope("ProgressUpdated", id, 5, { ...access, progress: 100 }),
      envelope("CourseCompleted", id, 6, access),
    ];
    for (const order of [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 4, 0, 3, 1], [1, 0, 3, 4, 2]]) {
      await m.db.execute("delete from learner_access", [], "run");
      await m.db.execute("delete from consumer_inbox", [], "run");
      await m.handle("learner-progress", envelope("CourseAccessGranted", id, 1, { ...access, expires_at: null, order_id: "o1" }));
      for (const i of order) await m.handle("learner-progress", later[i]!);
      const [row] = await m.rows("learner_access", "access_id");
      expect({ ...row, completed: Boolean(row.completed) }, String(order)).toMatchObject({ status: "active", expires_at: "2027-01-01T00:00:00.000Z", order_id: "o2", progress: 100, completed: true, version: 6 });
    }
  });
});
