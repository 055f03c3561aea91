/** A projection's batch through EventHandler.applyBatch: the same outcomes as one event at a time, in one transaction. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EventHandler } from "../../src/consumers/index.js";
import { GroupCommitWriter } from "../../src/persistence/index.js";
import { catalogCourse, searchCatalog } from "../../src/projections/index.js";
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

describe("EventHandler.applyBatch for a process manager", () => {
  const paid = (user: string, order: string) =>
    envelope("OrderPaid", order, 2, { order_id: order, user_id: user, course_ids: ["c1"], payment_id: `pay-${order}` });

  // A process manager that records what it reacts to, and how many reactions run at once.
  const reactor = (opts: { failOn?: string; keyed?: boolean } = {}) => {
    const r = { order: [] as string[], running: 0, most: 0 };
    const handler = new EventHandler(m.db, {
      name: "test-reactor",
      handles: { orders: ["OrderPaid"] },
      ...(opts.keyed === false ? {} : { orderKey: (e: { payload: unknown }) => (e.payload as { user_id: string }).user_id }),
      async react(e) {
        r.running++;
        r.most = Math.max(r.most, r.running);
        await new Promise((done) => setTimeout(done, 5));
        r.running--;
        if (e.aggregate_id === opts.failOn) throw new Error(`cannot handle ${e.aggregate_id}`);
        r.order.push(e.aggregate_id);
      },
    });
    return { r, handler };
  };

  it("reacts to different keys side by side and to one key in stream order", async () => {
    const { r, handler } = reactor();
    const events = [paid("u1", "o1"), paid("u2", "o2"), paid("u1", "o3"), paid("u3", "o4"), paid("u2", "o5"), envelope("UserRegistered", "u9", 1, { user_id: "u9", email: "u9@example.com", name: "U" })];

    expect(await handler.applyBatch(events)).toEqual(["handled", "handled", "handled", "handled", "handled", "skipped"]);

    expect(r.most).toBe(3);
    const of = (...orders: string[]) => r.order.filter((o) => orders.includes(o));
    expect(of("o1", "o3")).toEqual(["o1", "o3"]);
    expect(of("o2", "o5")).toEqual(["o2", "o5"]);
    expect(await handler.applyBatch(events)).toEqual(["duplicate", "duplicate", "duplicate", "duplicate", "duplicate", "skipped"]);
  });

  it("reacts once to an event that comes twice in a batch, and to none it handled in an earlier batch", async () => {
    const { r, handler } = reactor();
    const first = paid("u7", "o71");
    expect(await handler.applyBatch([first])).toEqual(["handled"]);
    const again = paid("u8", "o81");
    expect(await handler.applyBatch([first, again, again])).toEqual(["duplicate", "handled", "duplicate"]);
    expect(r.order).toEqual(["o71", "o81"]);
  });

  it("without a key, reacts one event at a time", async () => {
    const { r, handler } = reactor({ keyed: false });
    await handler.applyBatch([paid("u1", "o1"), paid("u2", "o2"), paid("u3", "o3")]);
    expect(r.most).toBe(1);
    expect(r.order).toEqual(["o1", "o2", "o3"]);
  });

  it("stops a key's chain at its failure, lets the other keys finish, then fails the batch", async () => {
    const { r, handler } = reactor({ failOn: "o1" });
    const events = [paid("u1", "o1"), paid("u2", "o2"), paid("u1", "o3"), paid("u2", "o4")];

    await expect(handler.applyBatch(events)).rejects.toThrow(/cannot handle o1/);

    // u1's later order never overtook the failed one; u2's chain ran to its end; nothing is left running.
    expect(r.order).toEqual(["o2", "o4"]);
    expect(r.running).toBe(0);
    // The runner then goes one by one: what went through is a duplicate.
    expect(await handler.handle(events[1]!)).toBe("duplicate");
  });
});

describe("EventHandler.applyBatch through the SQLite write worker", () => {
  let writer: GroupCommitWriter;
  beforeEach(() => {
    writer = new GroupCommitWriter(m.db, { sqliteWriter: "worker" });
  });
  afterEach(async () => {
    await writer.close();
  });

  const granted = (access: string, user: string) =>
    envelope("CourseAccessGranted", access, 1, { access_id: access, user_id: user, course_id: "c1", expires_at: null, order_id: null });
  const progressed = (access: string, user: string, v: number, progress: number) => envelope("ProgressUpdated", access, v, { access_id: access, user_id: user, course_id: "c1", progress });
  const acc = (n: number) => `acc_${n.toString(16).padStart(32, "0")}`;
  const learnerRows = () => m.rows("learner_access", "access_id");

  it("runs a write-only projection's batch as statements in one worker transaction: the same outcomes, rows and inbox as on the main connection", async () => {
    const viaWorker = new EventHandler(m.db, m.subscriber("learner-progress"), undefined, undefined, writer.sqliteWorker);
    const seen = granted(acc(0), "u0");
    expect(await viaWorker.applyBatch([seen])).toEqual(["handled"]);
    const g = granted(acc(1), "u1");
    const p = progressed(acc(1), "u1", 2, 40);
    const user = envelope("UserRegistered", "u1", 1, { user_id: "u1", email: "u1@example.com", name: "U" });

    expect(await viaWorker.applyBatch([user, g, p, p, seen])).toEqual(["skipped", "handled", "handled", "duplicate", "duplicate"]);

    expect(await learnerRows()).toMatchObject([
      { access_id: acc(0), progress: 0, version: 1 },
      { access_id: acc(1), progress: 40, version: 2 },
    ]);
    const inbox = (await m.rows("consumer_inbox", "event_id")).filter((r) => r.consumer === "learner-progress").map((r) => r.event_id);
    expect(inbox.sort()).toEqual([seen.event_id, g.event_id, p.event_id].sort());
    // A redelivery changes nothing; an older event than the row's version changes nothing either.
    expect(await viaWorker.applyBatch([g, p])).toEqual(["duplicate", "duplicate"]);
    expect(await viaWorker.applyBatch([progressed(acc(1), "u1", 2, 10)])).toEqual(["handled"]);
    expect((await learnerRows())[1]).toMatchObject({ progress: 40, version: 2 });
  });

  it("keeps the catalog and the search index (FTS5) through the worker: created, renamed, deprecated, redelivered", async () => {
    const cat = new EventHandler(m.db, m.subscriber("catalog"), undefined, undefined, writer.sqliteWorker);
    const srch = new EventHandler(m.db, m.subscriber("search"), undefined, undefined, writer.sqliteWorker);
    const both = async (...events: ReturnType<typeof envelope>[]) => [await cat.applyBatch(events), await srch.applyBatch(events)];
    const found = async (text: string) => (await searchCatalog(m.tx)({ text })).items.map((i) => i.course_id);
    const c1 = envelope("CourseCreated", "c1", 1, { course_id: "c1", title: "Rust for Pythonistas", instructor_id: "i1", policy_id: "p1" });
    const c2 = envelope("CourseCreated", "c2", 1, { course_id: "c2", title: "Rust in Anger", instructor_id: "i1", policy_id: "p1" });
    const u1 = envelope("CourseUpdated", "c1", 2, { course_id: "c1", title: "Go for Pythonistas", description: "Goroutines", price: { amount: 900, currency: "EUR" } });
    // One batch: created then renamed (the index follows the latest title), and a second course.
    expect(await both(c1, u1, c2)).toEqual([["handled", "handled", "handled"], ["handled", "handled", "handled"]]);
    expect(await found("rust")).toEqual(["c2"]);
    expect(await found("goroutines")).toEqual(["c1"]);
    expect(await catalogCourse(m.tx, "c1")).toMatchObject({ title: "Go for Pythonistas", price_amount: 900, version: 2, status: "active" });
    // Deprecated: out of the index, still in the catalog; a redelivered batch changes nothing.
    const d2 = envelope("CourseDeprecated", "c2", 2, { course_id: "c2", title: "Rust in Anger" });
    expect(await both(d2, c2)).toEqual([["handled", "duplicate"], ["handled", "duplicate"]]);
    expect(await found("rust")).toEqual([]);
    expect(await catalogCourse(m.tx, "c2")).toMatchObject({ status: "deprecated", version: 2 });
    expect(await m.db.execute("select count(*) as n from search_fts", [], "get")).toEqual({ n: 1 });
  });

  it("runs a batch of analytics upserts merged into multi-row inserts with the result of one at a time, repeated learners included", async () => {
    const viaWorker = new EventHandler(m.db, m.subscriber("analytics"), undefined, undefined, writer.sqliteWorker);
    // 250 progress events over 7 learners, out of order within each (a lower progress never wins).
    const events = Array.from({ length: 250 }, (_, i) => {
      const user = `u${i % 7}`;
      return envelope("ProgressUpdated", acc(i % 7), i + 1, { access_id: acc(i % 7), user_id: user, course_id: "c1", progress: (i * 37) % 101 });
    });
    const best = new Map<string, number>();
    for (const e of events) best.set(e.payload.user_id as string, Math.max(best.get(e.payload.user_id as string) ?? -1, e.payload.progress as number));
    expect(new Set(await viaWorker.applyBatch(events))).toEqual(new Set(["handled"]));
    const rows = await m.rows("analytics_learners", "user_id");
    expect(rows.map((r) => [r.user_id, r.progress])).toEqual([...best].sort(([a], [b]) => a.localeCompare(b)));
  });

  it("refuses a write-only projection that reads, and commits nothing of its batch", async () => {
    const liar = new EventHandler(
      m.db,
      {
        name: "liar",
        handles: { access: ["CourseAccessGranted"] },
        writesOnly: true,
        async apply(e, tx) {
          await tx.execute("select 1 as x from learner_access where access_id = ?", [e.aggregate_id], "get");
        },
      },
      undefined,
      undefined,
      writer.sqliteWorker,
    );
    await expect(liar.applyBatch([granted(acc(5), "u5")])).rejects.toThrow(/consumer liar is declared writesOnly, but its apply read: select 1/);
    expect((await m.rows("consumer_inbox", "event_id")).filter((r) => r.consumer === "liar")).toEqual([]);
  });

  it("records a process manager's handled events in the inbox through the worker", async () => {
    const reacted: string[] = [];
    const pm = new EventHandler(
      m.db,
      {
        name: "test-pm",
        handles: { orders: ["OrderPaid"] },
        async react(e) {
          reacted.push(e.aggregate_id);
        },
      },
      undefined,
      undefined,
      writer.sqliteWorker,
    );
    const paid = envelope("OrderPaid", "o1", 2, { order_id: "o1", user_id: "u1", course_ids: ["c1"], payment_id: "pay-o1" });
    expect(await pm.applyBatch([paid, paid])).toEqual(["handled", "duplicate"]);
    expect(await pm.applyBatch([paid])).toEqual(["duplicate"]);
    expect(reacted).toEqual(["o1"]);
    expect((await m.rows("consumer_inbox", "event_id")).filter((r) => r.consumer === "test-pm").map((r) => r.event_id)).toEqual([paid.event_id]);
  });
});
