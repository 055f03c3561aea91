/** A projection's batch through EventHandler.applyBatch: the same outcomes as one event at a time, in one transaction. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EventHandler } from "../../src/consumers/index.js";
import { catalogCourse } from "../../src/projections/index.js";
import { envelope, openReadModels, type ReadModels } from "../projections/fixtures.js";

let m: ReadModels;
let catalog: EventHandler;
const inbox = async () => (await m.rows("consumer_inbox", "event_id")).filter((r) => r.consumer === "catalog").map((r) => r.event_id);

beforeEach(async () => {
  m = await openReadModels();
  catalog = new EventHandler(m.db, m.subscriber("catalog"));
});
afterEach(async () => {
  await m?.close();
});

describe("EventHandler.applyBatch for a projection", () => {
  it("skips, handles and finds duplicates as handling one by one would, the same event twice included", async () => {
    const seen = envelope("CourseCreated", "c-seen", 1, { course_id: "c-seen", title: "Seen", instructor_id: "i1", policy_id: "p1" });
    await catalog.applyBatch([seen]);
    const user = envelope("UserRegistered", "u1", 1, { user_id: "u1", email: "u1@example.com", name: "U" });
    const created = envelope("CourseCreated", "c1", 1, { course_id: "c1", title: "One", instructor_id: "i1", policy_id: "p1" });
    const updated = envelope("CourseUpdated", "c1", 2, { course_id: "c1", title: "One, updated", description: "d", price: null });

    const outcomes = await catalog.applyBatch([user, created, created, seen, updated]);

    expect(outcomes).toEqual(["skipped", "handled", "duplicate", "duplicate", "handled"]);
    expect(await catalogCourse(m.tx, "c1")).toMatchObject({ title: "One, updated", version: 2 });
    expect((await inbox()).sort()).toEqual([seen.event_id, created.event_id, updated.event_id].sort());
  });

  it("records a batch larger than one inbox statement holds", async () => {
    const events = Array.from({ length: 1_201 }, (_, i) => envelope("CourseCreated", `c${i}`, 1, { course_id: `c${i}`, title: `Course ${i}`, instructor_id: "i1", policy_id: "p1" }));
    expect(new Set(await catalog.applyBatch(events))).toEqual(new Set(["handled"]));
    expect(await inbox()).toHaveLength(1_201);
    expect(await catalog.applyBatch(events.slice(1_000))).toEqual(Array(201).fill("duplicate"));
  });

  it("records nothing of a batch that fails: the runner retries its events one by one", async () => {
    const good = envelope("CourseCreated", "c2", 1, { course_id: "c2", title: "Two", instructor_id: "i1", policy_id: "p1" });
    const bad = { ...envelope("CourseCreated", "c3", 1, { course_id: "c3", title: "Three", instructor_id: "i1", policy_id: "p1" }), payload: { course_id: "c3" } };

    await expect(catalog.applyBatch([good, bad])).rejects.toThrow(/breaks the contract/);

    expect(await inbox()).toEqual([]);
    expect(await catalogCourse(m.tx, "c2")).toBeUndefined();
    expect(await catalog.handle(good)).toBe("handled");
  });
});
