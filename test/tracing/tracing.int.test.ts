/**
 * Tracing through a real Nerve: one PlaceOrder → MarkOrderPaid → access grant → UpdateProgress cascade
 * yields one trace whose spans link up, as received by an OTLP/HTTP endpoint; the gateway's push spans
 * are those of events a learner's socket took, not of the warm-up's replay; with tracing off the
 * events still carry the request's trace context in their JetStream headers, or a new one without it.
 */
import { randomBytes } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveAccessId } from "../../contracts/index.js";
import { command, query, startOtlpReceiver, startTestNerve, until, type OtlpReceiver, type ReceivedSpan, type TestNerve } from "../support/index.js";
import { SECRET, TestClient } from "../gateway/support.js";

const hex = (bytes: number) => randomBytes(bytes).toString("hex");
const traceparentOf = (traceId: string, spanId: string) => `00-${traceId}-${spanId}-01`;

/** Policy, course, learner: the cascade's preconditions, sent without trace context. */
async function catalog(t: TestNerve, p: string): Promise<void> {
  for (const [context, type, id, body] of [
    ["users", "RegisterUser", `${p}-user`, { email: `${p}@example.com`, name: "T" }],
    ["policies", "CreatePolicy", `${p}-pol`, { name: "Std", type: "standard", refund_period_days: 14 }],
    ["courses", "CreateCourse", `${p}-course`, { title: "T", instructor_id: "i1", policy_id: `${p}-pol`, price: { amount: 5, currency: "EUR" } }],
  ] as const) {
    expect((await command(t.client, context, type, id, body)).body.ok).toBe(true);
  }
}

/** The order placed and paid with `headers`; resolves once access-grants has granted the course. */
async function buyCourse(t: TestNerve, p: string, headers: (step: number) => Record<string, string>): Promise<string> {
  expect((await command(t.client, "orders", "PlaceOrder", `${p}-order`, { user_id: `${p}-user`, course_ids: [`${p}-course`] }, { headers: headers(0) })).body.ok).toBe(true);
  expect((await command(t.client, "orders", "MarkOrderPaid", `${p}-order`, { payment_id: "pay" }, { headers: headers(1) })).body.ok).toBe(true);
  await until("access is granted", async () => ((await query(t.client, "access", "GetLearnerProgress", { user_id: `${p}-user` })).body.result?.items ?? []).length === 1, 15_000);
  return deriveAccessId(`${p}-user`, `${p}-course`);
}

describe("tracing on: one trace across the cascade", () => {
  let receiver: OtlpReceiver;
  let t: TestNerve;
  const traceId = hex(16);
  const client = [hex(8), hex(8), hex(8)];
  // An UpdateProgress while the learner has no socket open.
  const unwatchedTraceId = hex(16);
  let trace: ReceivedSpan[] = [];
  const named = (name: string) => trace.filter((s) => s.name === name);
  const one = (name: string) => {
    const found = named(name);
    expect(found, name).toHaveLength(1);
    return found[0]!;
  };

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // The batch span processor reads its delay from the environment, as any OpenTelemetry SDK does.
    process.env.OTEL_BSP_SCHEDULE_DELAY = "50";
    t = await startTestNerve({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, NERVE_INSTANCE_ID: "traced-1", NERVE_JWT_SECRET: SECRET });
    await catalog(t, "tr");
    // The learner's app is open: the gateway pushes the grant and the progress to it.
    const app = await TestClient.ready(t.nerve.gateway.port, "tr-user");
    const accessId = await buyCourse(t, "tr", (i) => ({ traceparent: traceparentOf(traceId, client[i]!), tracestate: "vendor=nerve-test" }));
    // The client carries its trace into its next request.
    expect((await command(t.client, "access", "UpdateProgress", accessId, { progress: 40 }, { headers: { traceparent: traceparentOf(traceId, client[2]!) } })).body.ok).toBe(true);
    const wanted = ["access-grants OrderPaid", "issue GrantCourseAccess", "learner-progress CourseAccessGranted", "gateway push CourseAccessGranted", "learner-progress ProgressUpdated", "analytics ProgressUpdated", "gateway push ProgressUpdated", "publish ProgressUpdated"];
    await until("every hop's span is exported", () => wanted.every((n) => receiver.spans.some((s) => s.traceId === traceId && s.name === n)), 15_000);
    await app.eventCount(2);

    // App closed: the gateway reads the next progress, and no socket takes it.
    await app.close();
    expect((await command(t.client, "access", "UpdateProgress", accessId, { progress: 50 }, { headers: { traceparent: traceparentOf(unwatchedTraceId, hex(8)) } })).body.ok).toBe(true);
    await until("the unwatched progress is projected", () => receiver.spans.some((s) => s.traceId === unwatchedTraceId && s.name === "learner-progress ProgressUpdated"), 15_000);
    const last = (await (await jetstreamManager(t.client)).streams.info("EVENTS_ACCESS")).state.last_seq;
    await until("the gateway has read it", () => t.nerve.gateway.log.head >= last, 5_000);

    // A restart's warm-up reads every event of the last 24 h again.
    await t.stopNerve();
    await t.restartNerve();
    await t.stopNerve();
    trace = receiver.spans.filter((s) => s.traceId === traceId);
  });
  afterAll(async () => {
    delete process.env.OTEL_BSP_SCHEDULE_DELAY;
    await t?.close();
    await receiver?.close();
  });

  it("exports OTLP JSON as service nerve with the instance's id", () => {
    expect(receiver.contentTypes.length).toBeGreaterThan(0);
    expect(receiver.contentTypes.every((c) => c.startsWith("application/json"))).toBe(true);
    expect(trace[0]!.resource).toMatchObject({ "service.name": "nerve", "service.instance.id": "traced-1" });
  });

  it("links every span of the trace to a span of it or to the client's", () => {
    const ids = new Set([...trace.map((s) => s.spanId), ...client]);
    const orphans = trace.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId)).map((s) => s.name);
    expect(orphans).toEqual([]);
    for (const name of ["mailbox wait", "decide", "commit", "group commit", "publish OrderPlaced", "publish OrderPaid", "publish CourseAccessGranted"]) expect(named(name).length, name).toBeGreaterThan(0);
  });

  it("parents each request's span on the client's and each hop on the command that caused it", () => {
    const [placed, paid, progress] = ["command PlaceOrder", "command MarkOrderPaid", "command UpdateProgress"].map(one);
    expect([placed!.parentSpanId, paid!.parentSpanId, progress!.parentSpanId]).toEqual(client);
    expect(placed!.kind).toBe(2);
    expect(one("publish OrderPaid")).toMatchObject({ parentSpanId: paid!.spanId, kind: 4 });
    const reacting = one("access-grants OrderPaid");
    expect(reacting).toMatchObject({ parentSpanId: paid!.spanId, kind: 5 });
    // The process manager's command is a child of the consumer's span; what it causes, of the command.
    const grant = one("issue GrantCourseAccess");
    expect(grant).toMatchObject({ parentSpanId: reacting.spanId, kind: 3 });
    for (const name of ["publish CourseAccessGranted", "learner-progress CourseAccessGranted", "gateway push CourseAccessGranted"]) expect(one(name).parentSpanId, name).toBe(grant.spanId);
    expect(trace.filter((s) => s.parentSpanId === grant.spanId).map((s) => s.name)).toEqual(expect.arrayContaining(["mailbox wait", "decide", "commit"]));
    for (const name of ["learner-progress ProgressUpdated", "analytics ProgressUpdated", "gateway push ProgressUpdated"]) expect(one(name).parentSpanId, name).toBe(progress!.spanId);
  });

  it("makes a gateway push span only for an event a socket took, and none in the warm-up's replay", () => {
    const unwatched = receiver.spans.filter((s) => s.traceId === unwatchedTraceId).map((s) => s.name);
    expect(unwatched).toContain("learner-progress ProgressUpdated");
    expect(unwatched.filter((n) => n.startsWith("gateway push"))).toEqual([]);
    // Each event of the watched trace pushed once (`one`), and not again by the restart's warm-up.
    expect(one("gateway push CourseAccessGranted").attributes["nerve.stream_seq"]).toBeDefined();
    expect(one("gateway push ProgressUpdated").attributes["nerve.stream_seq"]).toBeDefined();
    // The warm-up replayed the catalog's and the order's traces' access events too: no push span for any twice.
    const pushes = receiver.spans.filter((s) => s.name.startsWith("gateway push")).map((s) => s.attributes["nerve.stream_seq"]);
    expect(new Set(pushes).size).toBe(pushes.length);
  });

  it("reaches each command's group commit, by parent or by link, with its batch size", () => {
    const commits = receiver.spans.filter((s) => s.name === "group commit");
    for (const cmd of [...trace.filter((s) => s.name.startsWith("command ")), one("issue GrantCourseAccess")]) {
      const tx = commits.find((c) => c.parentSpanId === cmd.spanId || c.links.some((l) => l.spanId === cmd.spanId));
      expect(tx, cmd.name).toBeDefined();
      expect(Number(tx!.attributes["nerve.batch_size"])).toBeGreaterThanOrEqual(1);
    }
  });

  it("starts a new trace for a request without trace context", () => {
    const register = receiver.spans.find((s) => s.name === "command RegisterUser");
    expect(register).toMatchObject({ parentSpanId: undefined, kind: 2 });
    expect(register!.traceId).not.toBe(traceId);
  });
});

/** A W3C traceparent as Nerve starts one with tracing off: version 00, random non-zero ids, not sampled. */
const FRESH_ROOT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-00$/;

describe("tracing off: the events still carry the request's trace context, or a new one", () => {
  let t: TestNerve;
  beforeAll(async () => {
    t = await startTestNerve();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("puts the request's traceparent and tracestate in the events' headers, also through a process manager", async () => {
    const traceparent = traceparentOf(hex(16), hex(8));
    const headers = { traceparent, tracestate: "vendor=off" };
    await catalog(t, "off");
    const accessId = await buyCourse(t, "off", () => headers);
    const jsm = await jetstreamManager(t.client);
    await until("the grant is in the stream", async () => (await t.nerve.bus.repo.outboxSize()) === 0, 5_000);
    for (const [stream, subject] of [
      ["EVENTS_ORDERS", "events.orders.OrderPaid.off-order"],
      ["EVENTS_ACCESS", `events.access.CourseAccessGranted.${accessId}`],
    ]) {
      const m = await jsm.streams.getMessage(stream!, { last_by_subj: subject! });
      expect(m?.header.get("traceparent"), subject).toBe(traceparent);
      expect(m?.header.get("tracestate"), subject).toBe("vendor=off");
    }
    const registered = await jsm.streams.getMessage("EVENTS_USERS", { last_by_subj: "events.users.UserRegistered.off-user" });
    expect(registered?.header.get("traceparent")).toMatch(FRESH_ROOT);
    expect(registered?.header.get("traceparent")!.slice(3, 35)).not.toBe(traceparent.slice(3, 35));
  });

  it("starts a new trace for a command without one, which its events and the process manager's commands carry", async () => {
    await catalog(t, "root");
    const accessId = await buyCourse(t, "root", () => ({}));
    const jsm = await jetstreamManager(t.client);
    await until("the grant is in the stream", async () => (await t.nerve.bus.repo.outboxSize()) === 0, 5_000);
    const headersOf = async (stream: string, subject: string) => (await jsm.streams.getMessage(stream, { last_by_subj: subject }))!.header;
    const placed = await headersOf("EVENTS_ORDERS", "events.orders.OrderPlaced.root-order");
    const paid = await headersOf("EVENTS_ORDERS", "events.orders.OrderPaid.root-order");
    const granted = await headersOf("EVENTS_ACCESS", `events.access.CourseAccessGranted.${accessId}`);
    for (const h of [placed, paid, granted]) {
      expect(h.get("traceparent")).toMatch(FRESH_ROOT);
      expect(h.get("tracestate")).toBe("");
    }
    // Two commands, two traces; the grant, issued because of OrderPaid, is in OrderPaid's.
    expect(placed.get("traceparent").slice(3, 35)).not.toBe(paid.get("traceparent").slice(3, 35));
    expect(granted.get("traceparent")).toBe(paid.get("traceparent"));
  });

  it("ignores a trace context that is not W3C: the command succeeds, its events carry a new one", async () => {
    const r = await command(t.client, "users", "RegisterUser", "off-bad", { email: "off-bad@example.com", name: "B" }, { headers: { traceparent: "not-a-trace", tracestate: "x=y" } });
    expect(r.body.ok).toBe(true);
    await until("the event is in the stream", async () => (await t.nerve.bus.repo.outboxSize()) === 0, 5_000);
    const m = await (await jetstreamManager(t.client)).streams.getMessage("EVENTS_USERS", { last_by_subj: "events.users.UserRegistered.off-bad" });
    expect(m?.header.get("traceparent")).toMatch(FRESH_ROOT);
    expect(m?.header.get("tracestate")).toBe("");
  });

  it("carries a later version's traceparent as version 00, without the fields it appends (was: carried whole, of any length)", async () => {
    const [id, parent] = [hex(16), hex(8)];
    const r = await command(t.client, "users", "RegisterUser", "off-future", { email: "off-future@example.com", name: "F" }, { headers: { traceparent: `01-${id}-${parent}-01-${"f".repeat(2_000)}` } });
    expect(r.body.ok).toBe(true);
    await until("the event is in the stream", async () => (await t.nerve.bus.repo.outboxSize()) === 0, 5_000);
    const m = await (await jetstreamManager(t.client)).streams.getMessage("EVENTS_USERS", { last_by_subj: "events.users.UserRegistered.off-future" });
    expect(m?.header.get("traceparent")).toBe(`00-${id}-${parent}-01`);
  });

  it("starts one for UpdateProgress as the gateway sends it (no trace headers)", async () => {
    const accessId = deriveAccessId("root-user", "root-course");
    expect((await command(t.client, "access", "UpdateProgress", accessId, { progress: 30 })).body.ok).toBe(true);
    await until("the progress is in the stream", async () => (await t.nerve.bus.repo.outboxSize()) === 0, 5_000);
    const m = await (await jetstreamManager(t.client)).streams.getMessage("EVENTS_ACCESS", { last_by_subj: `events.access.ProgressUpdated.${accessId}` });
    expect(m?.header.get("traceparent")).toMatch(FRESH_ROOT);
  });
});
