/**
 * CourseAccessGranted version 2 end to end (CONTRACT.md §2 "Versions", §4, §5, §6): a service upgraded
 * over access records the version-1 code wrote (its event log, snapshots and stream) serves both
 * versions to every reader — consumers, replay, audit.History, GetAccess and the gateway — and a
 * replay over the mixed stream rebuilds every read model exactly.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventSchemas, ServerFrame, Streams, decodeMsgPack, deriveAccessId } from "../../contracts/index.js";
import { ask, caughtUp, dump, eventually, ok } from "../e2e/story.js";
import { TestClient, startTestGateway, type TestGateway } from "../gateway/support.js";
import { startTestNerve, type TestNerve } from "../support/nerve.js";
import { version1GrantWrite } from "../support/version-1-writes.js";

const ada = "u-ada";
const access = (course: string) => deriveAccessId(ada, course);
const EUR = (amount: number) => ({ amount, currency: "EUR" });
/** Courses granted by the version-1 code, and by orders paid after the upgrade. */
const [V1_DONE, V1_REBOUGHT, V2_A, V2_B] = ["c-v1-done", "c-v1-rebought", "c-v2-a", "c-v2-b"];
const COURSES = [V1_DONE, V1_REBOUGHT, V2_A, V2_B];

let t: TestNerve;
let gw: TestGateway;
let live: TestClient;
beforeAll(async () => {
  t = await startTestNerve();
  gw = await startTestGateway(t.nats.url);
  await ok(t, "policies", "CreatePolicy", "pol-std", { name: "Standard", type: "standard", refund_period_days: 14 });
  for (const c of COURSES) await ok(t, "courses", "CreateCourse", c, { title: `Course ${c}`, instructor_id: "i-1", policy_id: "pol-std", price: EUR(1000) });
  await ok(t, "users", "RegisterUser", ada, { email: "ada@example.com", name: "Ada" });
  // Connected before anything is granted: every access event reaches it live.
  live = await TestClient.as(gw.port, ada);
  await live.welcome();

  // Before the upgrade: two grants committed and published by the version-1 code.
  for (const c of [V1_DONE, V1_REBOUGHT]) await t.nerve.writer.submit(version1GrantWrite(ada, c, `v1-${c}`));
  // After it: commands on those records, and orders paid.
  await ok(t, "access", "UpdateProgress", access(V1_DONE), { progress: 100 });
  await ok(t, "access", "RevokeCourseAccess", access(V1_REBOUGHT), { reason: "support case" });
  await ok(t, "orders", "PlaceOrder", "o-1", { user_id: ada, course_ids: [V2_A, V2_B] });
  // The same course in a second order, placed before the first was paid (afterwards PlaceOrder refuses it).
  await ok(t, "orders", "PlaceOrder", "o-3", { user_id: ada, course_ids: [V2_A] });
  await ok(t, "orders", "MarkOrderPaid", "o-1", { payment_id: "pay-1" });
  await ok(t, "orders", "PlaceOrder", "o-2", { user_id: ada, course_ids: [V1_REBOUGHT] });
  await ok(t, "orders", "MarkOrderPaid", "o-2", { payment_id: "pay-2" });
  await eventually(async () => expect((await ask(t, "GetAccess", { access_id: access(V2_A) })).order_id).toBe("o-1"));
  await ok(t, "access", "UpdateProgress", access(V2_A), { progress: 40 });
  // Paying it while the first order's access is active names it: the record remembers both (a refund of one leaves the other's).
  await ok(t, "orders", "MarkOrderPaid", "o-3", { payment_id: "pay-3" });
  await eventually(async () => expect((await ask(t, "GetAccess", { access_id: access(V2_A) })).order_id).toBe("o-3"));
  await eventually(async () => expect((await ask(t, "GetAccess", { access_id: access(V1_REBOUGHT) })).order_id).toBe("o-2"));
  await caughtUp(t);
});
afterAll(async () => {
  await live?.close();
  await gw?.close();
  await t?.close();
});

/** Tuples in a fixed order, for comparing sets of them. */
const sorted = (rows: unknown[][]) => rows.map((r) => JSON.stringify(r)).sort();

/** Every access event in EVENTS_ACCESS: its headers' type and version and its decoded envelope. */
async function accessStream(): Promise<Array<{ header: string; envelope: any }>> {
  const jsm = await jetstreamManager(t.client);
  const { state } = await jsm.streams.info(Streams.EVENTS_ACCESS.name);
  const out: Array<{ header: string; envelope: any }> = [];
  for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(Streams.EVENTS_ACCESS.name, { seq });
    const d = decodeMsgPack(m!.data);
    out.push({ header: `${m!.header.get("Event-Type")}@${m!.header.get("Event-Version")}`, envelope: d.ok ? d.value : null });
  }
  return out;
}

const expected = {
  [V1_DONE]: { status: "active", progress: 100, completed: true, order_id: null, version: 3 },
  [V1_REBOUGHT]: { status: "active", progress: 0, completed: false, order_id: "o-2", version: 3 },
  [V2_A]: { status: "active", progress: 40, completed: false, order_id: "o-3", version: 3 },
  [V2_B]: { status: "active", progress: 0, completed: false, order_id: "o-1", version: 1 },
};

describe("a stream and event log holding both versions of CourseAccessGranted", () => {
  it("holds version 1 as the old code wrote it and version 2 from now on, each announced in Event-Version", async () => {
    const grants = (await accessStream()).filter((m) => m.envelope.event_type === "CourseAccessGranted");
    // The relay keeps each aggregate's order; across aggregates the stream's order is free.
    expect(sorted(grants.map((g) => [g.envelope.payload.course_id, g.header, g.envelope.event_version, g.envelope.payload.order_id ?? "absent"]))).toEqual(
      sorted([
        [V1_DONE, "CourseAccessGranted@1", 1, "absent"],
        [V1_REBOUGHT, "CourseAccessGranted@1", 1, "absent"],
        [V2_A, "CourseAccessGranted@2", 2, "o-1"],
        [V2_B, "CourseAccessGranted@2", 2, "o-1"],
        [V1_REBOUGHT, "CourseAccessGranted@2", 2, "o-2"],
        [V2_A, "CourseAccessGranted@2", 2, "o-3"],
      ]),
    );
    // No event of another type changed version.
    const others = (await accessStream()).filter((m) => m.envelope.event_type !== "CourseAccessGranted");
    expect(new Set(others.map((m) => `${m.header.split("@")[1]}/${m.envelope.event_version}`))).toEqual(new Set(["1/1"]));
  });

  it("GetAccess shows the paying order, null for a record only version 1 granted (its snapshot has no order_id)", async () => {
    for (const c of COURSES) expect(await ask(t, "GetAccess", { access_id: access(c) }), c).toEqual({ access_id: access(c), user_id: ada, course_id: c, expires_at: null, ...expected[c] });
  });

  it("GetLearnerProgress, built from the mixed stream, equals GetAccess record by record", async () => {
    const { items } = await ask(t, "GetLearnerProgress", { user_id: ada });
    const views = await Promise.all(COURSES.map((c) => ask(t, "GetAccess", { access_id: access(c) })));
    expect(items).toEqual(views.sort((a, b) => a.course_id.localeCompare(b.course_id)));
  });

  it("audit.History upcasts the version-1 grant of the event log and returns version 2 as written", async () => {
    const history = async (c: string) => (await ask(t, "History", { aggregate_type: "AccessRecord", aggregate_id: access(c) })).events;
    const [v1Grant] = await history(V1_DONE);
    expect(EventSchemas.CourseAccessGranted.parse(v1Grant)).toMatchObject({ event_version: 2, correlation_id: `v1-${V1_DONE}`, payload: { order_id: null } });
    const rebought = (await history(V1_REBOUGHT)).map((e: any) => [e.event_type, e.event_version, e.payload.order_id]);
    expect(rebought).toEqual([["CourseAccessGranted", 2, null], ["AccessRevoked", 1, undefined], ["CourseAccessGranted", 2, "o-2"]]);
  });

  it("no consumer dead-lettered anything", async () => {
    expect(await t.nerve.consumers.deadLetters.list()).toEqual([]);
  });

  it("replaying every consumer of EVENTS_ACCESS over the mixed stream rebuilds read models identical to the live ones", async () => {
    const readModels = async () => ({
      progress: await ask(t, "GetLearnerProgress", { user_id: ada }),
      stats: await Promise.all(COURSES.map((c) => ask(t, "CourseStats", { course_id: c }))),
      certificates: await ask(t, "ListCertificates", { user_id: ada }),
      notifications: await ask(t, "ListNotifications", { user_id: ada }),
      audit: await dump(t, "select * from audit_records order by audit_id"),
      learnerRows: await dump(t, "select * from learner_access order by access_id"),
    });
    const before = await readModels();
    expect(before.certificates.items.map((c: any) => c.course_id)).toEqual([V1_DONE]);
    expect(before.audit).toHaveLength(1);
    expect(before.notifications.items.map((n: any) => n.kind).sort()).toEqual(["access_revoked", "welcome"]);
    // Whatever reads EVENTS_ACCESS, today these five.
    const readers = [...t.nerve.consumers.runners].filter(([, r]) => r.bindings.some((b) => b.stream === Streams.EVENTS_ACCESS.name)).map(([n]) => n);
    expect(readers.sort()).toEqual(["analytics", "audit", "certificates", "learner-progress", "notifications"]);
    for (const name of readers) {
      const runner = t.nerve.consumers.runners.get(name)!;
      const handled = runner.stats.handled;
      const last = await t.nerve.consumers.replay(name);
      expect(last.done, name).toBe(last.total);
      expect(runner.stats.handled, `${name} really read the streams again`).toBeGreaterThan(handled);
    }
    expect(await readModels()).toEqual(before);
    expect(await t.nerve.consumers.deadLetters.list()).toEqual([]);
  });
});

describe("the gateway over both versions", () => {
  it("sent the learner every grant live as a version-2 event frame: order_id null for version 1, the order for version 2", async () => {
    const frames = await live.eventCount(10);
    for (const f of frames) expect(ServerFrame.safeParse(f).success).toBe(true);
    const grants = frames.filter((f) => f.event.event_type === "CourseAccessGranted").map((f) => EventSchemas.CourseAccessGranted.parse(f.event));
    expect(sorted(grants.map((g) => [g.payload.course_id, g.aggregate_version, g.event_version, g.payload.order_id]))).toEqual(
      sorted([
        [V1_DONE, 1, 2, null],
        [V1_REBOUGHT, 1, 2, null],
        [V2_A, 1, 2, "o-1"],
        [V2_B, 1, 2, "o-1"],
        [V1_REBOUGHT, 3, 2, "o-2"],
        [V2_A, 3, 2, "o-3"],
      ]),
    );
  });

  it("welcomes with GetAccess results: order_id null for the version-1-only record, the order's id for the others", async () => {
    const client = await TestClient.as(gw.port, ada);
    try {
      const { progress } = await client.welcome();
      expect(Object.fromEntries(progress!.map((r: any) => [r.course_id, r.order_id]))).toEqual({ [V1_DONE]: null, [V1_REBOUGHT]: "o-2", [V2_A]: "o-3", [V2_B]: "o-1" });
      expect(progress).toEqual((await ask(t, "GetLearnerProgress", { user_id: ada })).items);
    } finally {
      await client.close();
    }
  });

  it("a fresh gateway reading the stream from its start derives the same records as GetAccess", async () => {
    const fresh = await startTestGateway(t.nats.url);
    try {
      const views = fresh.log.views(ada).sort((a, b) => a.course_id.localeCompare(b.course_id));
      expect(views).toEqual((await ask(t, "GetLearnerProgress", { user_id: ada })).items);
    } finally {
      await fresh.close();
    }
  });
});
