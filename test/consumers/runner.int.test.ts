/**
 * The consumer runner survives its own failures (issue #10): a dead letter that cannot be stored is
 * retried with the message kept in hand until it can be, and a consumer loop that ends behind the
 * runner's back is started again — logged and counted, never an unhandled rejection that ends the process.
 */
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, DeliverPolicy, jetstream, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { Headers, encodeMsgPack, upcasters, type EnvelopeBase } from "../../contracts/index.js";
import { ConsumerRunner, DeadLetters, EventHandler, bindingsOf } from "../../src/consumers/index.js";
import { catalogCourse } from "../../src/projections/index.js";
import { backgroundFailures } from "../../src/supervision/index.js";
import { until, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
import { envelope, openReadModels, publishEvent, quiet, type ReadModels } from "../projections/fixtures.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;
let m: ReadModels;
let runner: ConsumerRunner;
let lines: { level: number; msg: string; task?: string }[];

function eventTypeHeader(eventType: string) {
  const h = natsHeaders();
  h.set(Headers.EventType, eventType);
  return h;
}

async function publish(subject: string, data: Uint8Array, eventType: string): Promise<void> {
  await jetstream(nc).publish(subject, data, { headers: eventTypeHeader(eventType) });
}

const created = (id: string): EnvelopeBase => envelope("CourseCreated", id, 1, { course_id: id, title: `Course ${id}`, instructor_id: "i1", policy_id: "p1" });
const deprecated = (id: string): EnvelopeBase => envelope("CourseDeprecated", id, 2, { course_id: id, title: `Course ${id}` });

useNatsWithStreams((h) => ({ nats, nc, jsm } = h));

beforeEach(async () => {
  m = await openReadModels();
  lines = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  const logger = pino({ level: "info" }, sink);
  runner = new ConsumerRunner(jetstream(nc), jsm, new EventHandler(m.db, m.subscriber("catalog")), new DeadLetters(m.db), logger, { maxDeliver: 3, backoffMs: [50] });
  await runner.start();
});
afterEach(async () => {
  await runner?.stop();
  await jsm.consumers.delete("EVENTS_COURSES", "catalog").catch(() => false);
  await m?.close();
});

describe("ConsumerRunner under its own failures", () => {
  it("retries a dead letter it cannot store until it can, then goes on with the next events", async () => {
    await m.db.execute("drop table consumer_dead_letters", [], "run");
    await publish("events.courses.CourseCreated.poison", new Uint8Array([0xc1, 0x00, 0xff]), "CourseCreated");

    await until("two failed attempts to store the dead letter", () => runner.stats.deadLetterFailures >= 2);
    expect(runner.stats.deadLettered).toBe(0);
    expect(lines.some((l) => l.level === 50 && l.msg === "could not store a dead letter; will retry")).toBe(true);

    await m.db.orm.schema.updateSchema({ safe: true }); // the table is back
    const deadLetters = new DeadLetters(m.db);
    await until("the dead letter is stored", async () => (await deadLetters.list("catalog")).length === 1);
    expect(runner.stats.deadLettered).toBe(1);
    expect((await deadLetters.list("catalog"))[0]).toMatchObject({ stream: "EVENTS_COURSES", event_id: null, reason: expect.stringMatching(/undecodable MessagePack/) });

    const next = created("after-poison");
    await publish(`events.courses.CourseCreated.${next.aggregate_id}`, encodeMsgPack(next), "CourseCreated");
    await until("the next event is applied", async () => (await catalogCourse(m.tx, "after-poison")) !== undefined);
  });

  it("parks an envelope whose payload is not an object (an array, a string) as not a contract envelope", async () => {
    const deadLetters = new DeadLetters(m.db);
    const bad = [{ ...created("payload-array"), payload: [] }, { ...created("payload-string"), payload: "x" }];
    for (const e of bad) await publish(`events.courses.CourseCreated.${e.aggregate_id}`, encodeMsgPack(e), "CourseCreated");
    const good = created("payload-kinds-ok");
    await publish(`events.courses.CourseCreated.${good.aggregate_id}`, encodeMsgPack(good), "CourseCreated");
    await until("the good event is applied", async () => (await catalogCourse(m.tx, "payload-kinds-ok")) !== undefined);
    // Parked without an event id (the envelope did not parse), with the reason that names the payload.
    const parked = async () => (await deadLetters.list("catalog")).filter((d) => d.reason.startsWith("not a contract envelope: payload expected an object"));
    await until("the two are parked", async () => (await parked()).length === 2);
    expect((await parked()).map((d) => d.event_id)).toEqual([null, null]);
    for (const e of bad) expect(await catalogCourse(m.tx, e.aggregate_id)).toBeUndefined();
  });

  it("parks an event whose upcaster throws with the envelope as received, so that its retry upcasts it again once the code is fixed (it kept none: cannot be retried)", async () => {
    const id = "acc_00000000000000000000000000000abc";
    // Version 1, as streams keep it: the upcaster adds order_id.
    const v1 = { ...envelope("CourseAccessGranted", id, 1, { access_id: id, user_id: "u1", course_id: "c1", expires_at: null, order_id: null }), event_version: 1 };
    delete (v1.payload as Record<string, unknown>).order_id;
    const progress = new ConsumerRunner(jetstream(nc), jsm, new EventHandler(m.db, m.subscriber("learner-progress")), new DeadLetters(m.db), quiet, { maxDeliver: 3, backoffMs: [50] });
    const dead = new DeadLetters(m.db);
    // The upcaster has a bug, and changes the payload before it throws.
    const bug = vi.spyOn(upcasters, "upcast").mockImplementation((e) => {
      (e.payload as Record<string, unknown>).half_done = true;
      throw new Error("upcaster bug");
    });
    try {
      await progress.start();
      await jetstream(nc).publish(`events.access.CourseAccessGranted.${id}`, encodeMsgPack(v1), { headers: eventTypeHeader("CourseAccessGranted") });
      await until("parked", async () => (await dead.list("learner-progress")).length === 1);
    } finally {
      bug.mockRestore();
      await progress.stop();
      await jsm.consumers.delete("EVENTS_ACCESS", "learner-progress").catch(() => false);
      // Nothing of it left for the other tests' durables on the stream.
      await jsm.streams.purge("EVENTS_ACCESS");
    }
    const [letter] = await dead.list("learner-progress");
    expect(letter).toMatchObject({ event_id: v1.event_id, event_type: "CourseAccessGranted", reason: "upcasting CourseAccessGranted from version 1 failed: upcaster bug", attempts: 1 });
    // What was received, not half upcast.
    expect(letter!.envelope).toEqual(v1);

    expect(await dead.retry(letter!.id, new Map([["learner-progress", new EventHandler(m.db, m.subscriber("learner-progress"))]]))).toBe("handled");
    expect(await m.rows("learner_access", "access_id")).toMatchObject([{ access_id: id, status: "active", order_id: null }]);
    expect(await dead.list("learner-progress")).toEqual([]);
  });

  it("starts a consumer loop again when its durable is deleted behind its back, and loses no event", async () => {
    const task = "consumer catalog on EVENTS_COURSES";
    const before = backgroundFailures.get(task) ?? 0;
    await jsm.consumers.delete("EVENTS_COURSES", "catalog");
    await until("the loop's end is reported", () => (backgroundFailures.get(task) ?? 0) > before);

    const e = created("after-restart");
    await publish(`events.courses.CourseCreated.${e.aggregate_id}`, encodeMsgPack(e), "CourseCreated");
    await until("the event is applied by the restarted loop", async () => (await catalogCourse(m.tx, "after-restart")) !== undefined);
    expect(lines.some((l) => l.level === 50 && l.task === task)).toBe(true);
  });
});

describe("ConsumerRunner's durables", () => {
  it("read a whole stream without a filter subject, recreate one an earlier release made with the stream's name as filter, and refuse any other", async () => {
    // catalog reads several course event types: nats-server before 2.9.15 would recount a filtered durable's pending on every delivery.
    expect((await jsm.consumers.info("EVENTS_COURSES", "catalog")).config.filter_subject ?? "").toBe("");
    expect(bindingsOf({ courses: ["CourseCreated", "CoursePublished"], orders: ["OrderPaid"] })).toEqual([
      { stream: "EVENTS_COURSES", filter: "events.courses.>", consumerFilter: undefined },
      { stream: "EVENTS_ORDERS", filter: "events.orders.OrderPaid.*", consumerFilter: "events.orders.OrderPaid.*" },
    ]);

    await runner.stop();
    const replace = async (filter: string) => {
      await jsm.consumers.delete("EVENTS_COURSES", "catalog");
      await jsm.consumers.add("EVENTS_COURSES", { durable_name: "catalog", ack_policy: AckPolicy.Explicit, filter_subject: filter });
    };
    await replace("events.courses.>");
    await runner.ensure();
    const info = await jsm.consumers.info("EVENTS_COURSES", "catalog");
    expect(info.config.filter_subject ?? "").toBe("");
    expect(info.config.ack_policy).toBe(AckPolicy.All);
    expect(lines.some((l) => l.level === 30 && l.msg === "durable of an earlier release recreated from its ack floor, acknowledged by floor")).toBe(true);

    await replace("events.courses.CourseCreated.*");
    await expect(runner.ensure()).rejects.toThrow("consumer catalog on EVENTS_COURSES filters events.courses.CourseCreated.*, expected nothing");
  });
});

describe("ConsumerRunner's acks (AckPolicy.All: the floor of what it committed)", () => {
  const publishCourses = async (prefix: string, n: number) => {
    for (let i = 0; i < n; i++) {
      const e = created(`${prefix}-${i}`);
      await publish(`events.courses.CourseCreated.${e.aggregate_id}`, encodeMsgPack(e), "CourseCreated");
    }
  };
  const floorOf = async () => (await jsm.consumers.info("EVENTS_COURSES", "catalog")).ack_floor.stream_seq;
  const lastSeq = async () => (await jsm.streams.info("EVENTS_COURSES")).state.last_seq;

  it("skips the events it does not handle by their subject, without decoding them, and settles them with its floor", async () => {
    const notifications = new ConsumerRunner(jetstream(nc), jsm, new EventHandler(m.db, m.subscriber("notifications")), new DeadLetters(m.db), pino({ level: "silent" }), { maxDeliver: 3, backoffMs: [50] });
    await notifications.start();
    try {
      // Not MessagePack and no Event-Type header: decoded, each would be dead-lettered.
      for (let i = 0; i < 20; i++) await jetstream(nc).publish(`events.users.UserProfileUpdated.skip-${i}`, new Uint8Array([0xc1]));
      const last = (await jsm.streams.info("EVENTS_USERS")).state.last_seq;
      await until("the floor reaches the stream's end", async () => (await jsm.consumers.info("EVENTS_USERS", "notifications")).ack_floor.stream_seq === last);
      expect(notifications.stats.skipped).toBe(20);
      expect(notifications.stats.deadLettered).toBe(0);
      expect(await new DeadLetters(m.db).list("notifications")).toEqual([]);
    } finally {
      await notifications.stop();
      await jsm.consumers.delete("EVENTS_USERS", "notifications").catch(() => false);
    }
  });

  it("makes its durable acknowledged by floor, without max_deliver, and acks every event with fewer acks than events", async () => {
    const info = await jsm.consumers.info("EVENTS_COURSES", "catalog");
    expect(info.config.ack_policy).toBe(AckPolicy.All);
    expect(info.config.max_deliver ?? -1).toBeLessThanOrEqual(0);

    const acksBefore = runner.stats.acks;
    await publishCourses("floor", 300);
    const last = await lastSeq();
    await until("the floor reaches the stream's last event", async () => (await floorOf()) === last);
    expect(runner.stats.handled).toBeGreaterThanOrEqual(300);
    expect(runner.stats.acks - acksBefore).toBeGreaterThan(0);
    expect(runner.stats.acks - acksBefore).toBeLessThan(300);
    expect((await jsm.consumers.info("EVENTS_COURSES", "catalog")).num_ack_pending).toBe(0);
  });

  // The catalog's rows in the order they were first written: SQLite's rowid grows with each insert.
  const applied = async (prefix: string) => ((await m.rows("catalog_courses", "rowid")) as { course_id: string }[]).map((r) => r.course_id).filter((id) => id.startsWith(prefix));
  const ackPending = async () => (await jsm.consumers.info("EVENTS_COURSES", "catalog")).num_ack_pending;
  /**
   * With the runner caught up and stopped: the course's creation published and taken, unacknowledged, by an
   * earlier reader of the durable, then its deprecation (version 2) published. Resolves with the held delivery.
   */
  const creationHeldByAnEarlierReader = async (id: string): Promise<JsMsg> => {
    await until("the runner is caught up", async () => (await floorOf()) === (await lastSeq()));
    await runner.stop();
    const earlier = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
    await publishEvent(nc, created(id));
    const held: JsMsg[] = [];
    for await (const msg of await earlier.fetch({ max_messages: 1, expires: 2_000 })) held.push(msg);
    expect(held).toHaveLength(1);
    await publishEvent(nc, deprecated(id));
    return held[0]!;
  };

  it("holds back what arrives while another reader holds deliveries, hands those back to JetStream itself, and applies it all in stream order (acks likewise)", async () => {
    await publishCourses("before", 5);
    await until("the runner is caught up", async () => (await floorOf()) === (await lastSeq()));
    await runner.stop();

    // A zombie reader (say, an instance that lost its lease while stalled, or deliveries lost in flight with
    // a connection) takes 3 events of the durable and never gives them back.
    const zombie = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
    await publishCourses("kept", 3);
    const taken = [];
    for await (const msg of await zombie.fetch({ max_messages: 3, expires: 2_000 })) taken.push(msg);
    expect(taken).toHaveLength(3);

    await runner.start();
    await publishCourses("late", 20);
    // Before the hold: the later events applied at once, ahead of the zombie's; with the hold alone, they
    // waited for ack_wait (30 s) to bring the zombie's back.
    const last = await lastSeq();
    await until("the floor reaches the stream's last event", async () => (await floorOf()) === last, 10_000);
    expect((await applied("")).filter((id) => id.startsWith("kept-") || id.startsWith("late-"))).toEqual([...["kept-0", "kept-1", "kept-2"], ...Array.from({ length: 20 }, (_, i) => `late-${i}`)]);
    expect(runner.stats.heldBack).toBeGreaterThan(0);
    expect(runner.stats.heldBackTimedOut).toBe(0);
    expect(lines.some((l) => l.msg === "handed deliveries this reader lacks back to JetStream, to have them in order")).toBe(true);
    expect(lines.some((l) => l.msg === "every outstanding delivery of the durable is this reader's: acks resume")).toBe(true);
  });

  it("keeps stream order when another reader's delivery goes out and comes back while the reader retries an event in place (the loop not waiting in the hold)", async () => {
    await until("the runner is caught up", async () => (await floorOf()) === (await lastSeq()));
    // The database is busy for one course (SQLITE_BUSY: transient, retried in place) until released.
    let released = false;
    const busy = () => Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
    const h = runner.handler as unknown as { applyBatch: (...a: unknown[]) => Promise<unknown>; handle: (...a: unknown[]) => Promise<unknown> };
    const [applyBatch, handle] = [h.applyBatch.bind(h), h.handle.bind(h)];
    h.applyBatch = async (...a: unknown[]) => {
      if (!released && (a[0] as EnvelopeBase[]).some((e) => e.aggregate_id === "busy-0")) throw busy();
      return applyBatch(...a);
    };
    h.handle = async (...a: unknown[]) => {
      if (!released && (a[0] as EnvelopeBase).aggregate_id === "busy-0") throw busy();
      return handle(...a);
    };
    await publishEvent(nc, created("busy-0"));
    await until("the busy course is retried in place", () => runner.stats.retries > 0);
    // Another reader's pull request waits beside the runner's and takes one of the creations.
    const zombie = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
    const taken: JsMsg[] = [];
    const fetching = (async () => {
      for await (const msg of await zombie.fetch({ max_messages: 1, expires: 5_000 })) taken.push(msg);
    })();
    await new Promise((r) => setTimeout(r, 300));
    // Creations one at a time until the zombie's request has taken one (the server serves waiting requests in turn).
    const ids: string[] = [];
    for (let i = 0; i < 20 && taken.length === 0; i++) {
      const id = `busy-${i + 1}`;
      ids.push(id);
      await publishEvent(nc, created(id));
      await new Promise((r) => setTimeout(r, 100));
    }
    await fetching;
    expect(taken).toHaveLength(1);
    for (const id of ids) await publishEvent(nc, deprecated(id));
    // Given back by the zombie (or by the runner itself), it arrives behind the deprecations.
    taken[0]!.nak();
    await until("clean again while the retry goes on", () => lines.some((l) => l.msg === "every outstanding delivery of the durable is this reader's: acks resume"), 15_000);
    released = true;
    const last = await lastSeq();
    await until("the floor reaches the stream's last event", async () => (await floorOf()) === last, 20_000);
    // Before: applied in arrival order, the creation the zombie took behind its deprecation — active for good.
    for (const id of ids) expect(await catalogCourse(m.tx, id)).toMatchObject({ status: "deprecated" });
  });

  it("ends a hold at once when the durable's messages end (deleted behind its back), leaving what it held for the next reader", async () => {
    const c = created("gone-1");
    await creationHeldByAnEarlierReader(c.aggregate_id);
    await runner.start();
    await until("the runner holds", () => runner.stats.heldBack > 0, 15_000, 10);
    const t0 = performance.now();
    await jsm.consumers.delete("EVENTS_COURSES", "catalog");
    // Before: the loop waited out the whole hold (60 s), then applied the deprecation without its creation.
    await until("the reader is open again on the recreated durable and at the stream's end", async () => (await floorOf().catch(() => -1)) === (await lastSeq()), 15_000);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(runner.stats.heldBackTimedOut).toBe(0);
    expect(await catalogCourse(m.tx, c.aggregate_id)).toMatchObject({ status: "deprecated", version: 2 });
  });

  it("never lets a course's deprecation overtake its creation that an earlier reader held: the catalog ends deprecated", async () => {
    const c = created("order-1");
    // An earlier reader took the creation and kept it; the deprecation comes to the runner first.
    const held = await creationHeldByAnEarlierReader(c.aggregate_id);

    await runner.start();
    await until("the deprecation is delivered to the runner", async () => (await ackPending()) === 2);
    // Before: applied at once, it found no row (nothing to deprecate, its inbox row written); the creation,
    // back later, wrote the course active — for good.
    held.nak();
    const last = await lastSeq();
    await until("the floor reaches the stream's last event", async () => (await floorOf()) === last);
    expect(await catalogCourse(m.tx, c.aggregate_id)).toMatchObject({ status: "deprecated", version: 2 });
  });

  it("acks on to the stream's end after nats-server is killed and restarted from its store", async () => {
    // Killed while the runner acks a burst: the server's stored consumer state can lag its last acks.
    const start = await lastSeq();
    await publishCourses("pre-kill", 400);
    await until("the runner is half-way", async () => (await floorOf()) >= start + 200, 30_000, 25);
    await nats.kill();
    await nats.restart();
    // The server may come back with a consumer state older than the last acks: those deliveries are outstanding again.
    await until("JetStream answers again", async () => (await jsm.streams.info("EVENTS_COURSES").then(() => true, () => false)), 30_000);
    await publishCourses("post-kill", 50);
    const last = await lastSeq();
    await until("the floor reaches the stream's last event, nothing outstanding", async () => {
      const info = await jsm.consumers.info("EVENTS_COURSES", "catalog");
      return info.ack_floor.stream_seq === last && info.num_ack_pending === 0;
    }, 50_000);
    for (const i of [0, 49]) expect(await catalogCourse(m.tx, `post-kill-${i}`)).toBeDefined();
  });

  it("recreates an earlier release's durable (an ack per event) from its ack floor: what was outstanding is applied, nothing is lost", async () => {
    await publishCourses("old", 4);
    await until("the runner is caught up", async () => (await floorOf()) === (await lastSeq()));
    await runner.stop();
    const floor = await floorOf();
    await jsm.consumers.delete("EVENTS_COURSES", "catalog");
    await jsm.consumers.add("EVENTS_COURSES", {
      durable_name: "catalog",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: floor + 1,
      max_deliver: 5,
    });
    // The earlier release took 2 events and crashed before acking them.
    await publishCourses("outstanding", 2);
    const crashed = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
    for await (const _ of await crashed.fetch({ max_messages: 2, expires: 2_000 })) void _;
    expect((await jsm.consumers.info("EVENTS_COURSES", "catalog")).num_ack_pending).toBe(2);

    await runner.start();
    const info = await jsm.consumers.info("EVENTS_COURSES", "catalog");
    expect(info.config.ack_policy).toBe(AckPolicy.All);
    expect(info.config.max_deliver ?? -1).toBeLessThanOrEqual(0);
    await publishCourses("new", 2);
    const last = await lastSeq();
    await until("the floor reaches the stream's last event", async () => (await floorOf()) === last);
    for (const id of ["outstanding-0", "outstanding-1", "new-0", "new-1"]) expect(await catalogCourse(m.tx, id)).toBeDefined();
  });
});
