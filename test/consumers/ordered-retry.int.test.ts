/**
 * A failed event is retried in place, before anything after it in its stream (real nats-server, real
 * SQLite file, the process manager's commands on a fake bus). Before, the runner nak'ed it for a later
 * redelivery and went on: a refund whose payment's grant failed once was applied first, and the
 * redelivered payment then granted access to a refunded order. A transient failure (the owner
 * unavailable) is retried for as long as it lasts instead of being parked after five attempts.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { Headers, NerveError, encodeMsgPack, type EnvelopeBase } from "../../contracts/index.js";
import { ConsumerRunner, DeadLetters, EventHandler, type RetryPolicy, type Subscriber } from "../../src/consumers/index.js";
import { isTransientFailure } from "../../src/consumers/transient.js";
import { FencedError } from "../../src/cluster/index.js";
import { WriteWorkerStopped } from "../../src/persistence/sqlite-write-worker.js";
import { until, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
import { envelope, nerveError, openReadModels, quiet, type ReadModels } from "../projections/fixtures.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;
let m: ReadModels;
const runners: ConsumerRunner[] = [];

useNatsWithStreams((h) => ({ nats, nc, jsm } = h));

beforeEach(async () => {
  m = await openReadModels();
  // Every test reads its own events from a new durable.
  for (const stream of ["EVENTS_ORDERS", "EVENTS_COURSES"]) await jsm.streams.purge(stream);
});
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop();
  for (const [stream, name] of [["EVENTS_ORDERS", "access-grants"], ["EVENTS_COURSES", "ordered-probe"]]) await jsm.consumers.delete(stream!, name!).catch(() => false);
  await m?.close();
});

async function publish(e: EnvelopeBase, context: string): Promise<void> {
  const h = natsHeaders();
  h.set(Headers.EventType, e.event_type);
  await jetstream(nc).publish(`events.${context}.${e.event_type}.${e.aggregate_id}`, encodeMsgPack(e), { headers: h, msgID: e.event_id });
}

async function run(subscriber: Subscriber, retry: RetryPolicy = { maxDeliver: 3, backoffMs: [30, 60] }): Promise<ConsumerRunner> {
  const r = new ConsumerRunner(jetstream(nc), jsm, new EventHandler(m.db, subscriber), new DeadLetters(m.db), quiet, retry);
  runners.push(r);
  await r.start();
  return r;
}

const paid = (order: string, user: string, courses: string[]) => envelope("OrderPaid", order, 2, { order_id: order, user_id: user, course_ids: courses, payment_id: `pay-${order}` });
const refunded = (order: string, user: string, courses: string[]) => envelope("OrderRefunded", order, 3, { order_id: order, user_id: user, course_ids: courses, refund_reason: "changed my mind" });

describe("a failed event is retried before any later event", () => {
  it("a refund waits for its payment's grant that failed twice: granted, then revoked", async () => {
    let failures = 2;
    m.bus.fail = (req) => (req.type === "GrantCourseAccess" && failures-- > 0 ? nerveError("unavailable") : undefined);
    // Published before the runner starts, so that both arrive in one batch; the refund on its own after.
    await publish(paid("o1", "u1", ["c1"]), "orders");
    await publish(refunded("o1", "u1", ["c1"]), "orders");
    const runner = await run(m.subscriber("access-grants"));
    await until("both handled", () => runner.stats.handled + runner.stats.duplicates >= 2 && m.bus.finished.includes("RevokeCourseAccess"));
    // Three grants (the batch's and the first in place failed, the second in place went through), and only then the revoke.
    expect(m.bus.finished).toEqual(["GrantCourseAccess", "GrantCourseAccess", "GrantCourseAccess", "RevokeCourseAccess"]);
    expect(runner.stats.retries).toBe(1);
    expect(await new DeadLetters(m.db).list("access-grants")).toEqual([]);
  });

  it("across batches too: a later event arriving while one is retried waits behind it", async () => {
    let failing = true;
    m.bus.fail = (req) => (req.type === "GrantCourseAccess" && failing ? nerveError("unavailable") : undefined);
    const runner = await run(m.subscriber("access-grants"), { maxDeliver: 3, backoffMs: [40] });
    await publish(paid("o2", "u2", ["c1"]), "orders");
    await until("the grant failed once", () => runner.stats.retries >= 1);
    await publish(refunded("o2", "u2", ["c1"]), "orders");
    // The refund is in hand, and its revoke is not sent while the payment still fails.
    await new Promise((r) => setTimeout(r, 300));
    expect(m.bus.finished.filter((t) => t === "RevokeCourseAccess")).toEqual([]);
    failing = false;
    await until("the revoke is sent", () => m.bus.finished.includes("RevokeCourseAccess"));
    expect(m.bus.finished.at(-2)).toBe("GrantCourseAccess");
    expect(m.bus.finished.at(-1)).toBe("RevokeCourseAccess");
  });

  it("retries a transient failure past the attempts of the retry policy, and parks nothing", async () => {
    let failures = 7;
    m.bus.fail = (req) => (req.type === "GrantCourseAccess" && failures-- > 0 ? nerveError("unavailable") : undefined);
    await publish(paid("o3", "u3", ["c1"]), "orders");
    const runner = await run(m.subscriber("access-grants"), { maxDeliver: 3, backoffMs: [10, 20] });
    await until("granted after seven failures", () => runner.stats.handled >= 1);
    // The batch's attempt, then six in place (the last five beyond maxDeliver).
    expect(runner.stats.retries).toBe(6);
    expect(runner.stats.deadLettered).toBe(0);
    expect(await new DeadLetters(m.db).list("access-grants")).toEqual([]);
  });

  it("counts only the failures that are not transient towards parking: unavailable for a while, then one bug, then applied", async () => {
    // Was: one counter for every attempt, so the first `internal` after maxDeliver − 1 `unavailable`s parked
    // the payment (a learner without access until an operator's retry).
    const answers = ["unavailable", "unavailable", "unavailable", "unavailable", "internal"] as const;
    let i = 0;
    m.bus.fail = (req) => (req.type === "GrantCourseAccess" && i < answers.length ? nerveError(answers[i++]!) : undefined);
    await publish(paid("o6", "u6", ["c1"]), "orders");
    const runner = await run(m.subscriber("access-grants"), { maxDeliver: 3, backoffMs: [10, 20] });
    await until("granted", () => runner.stats.handled >= 1);
    expect(i).toBe(answers.length);
    expect(runner.stats.deadLettered).toBe(0);
    expect(await new DeadLetters(m.db).list("access-grants")).toEqual([]);
  });

  it("parks an event that keeps failing otherwise on the policy's last attempt, then goes on in order", async () => {
    m.bus.fail = (req) => (req.type === "GrantCourseAccess" && (req.body as { course_id: string }).course_id === "c-bad" ? nerveError("internal") : undefined);
    await publish(paid("o4", "u4", ["c-bad"]), "orders");
    await publish(refunded("o5", "u4", ["c-ok"]), "orders");
    const runner = await run(m.subscriber("access-grants"));
    await until("the refund is handled", () => m.bus.finished.includes("RevokeCourseAccess"));
    // The batch's attempt, then three in place (the policy's maxDeliver), then parked; then the refund.
    expect(m.bus.finished).toEqual(["GrantCourseAccess", "GrantCourseAccess", "GrantCourseAccess", "GrantCourseAccess", "RevokeCourseAccess"]);
    expect(runner.stats.deadLettered).toBe(1);
    const parked = await new DeadLetters(m.db).list("access-grants");
    expect(parked).toHaveLength(1);
    expect(parked[0]).toMatchObject({ event_type: "OrderPaid", attempts: 3, reason: expect.stringContaining("internal for the test") });
  });

  describe("a read model's events", () => {
    // What the probe applied, in its transaction (a batch that fails applies nothing).
    let failuresOf = new Map<string, number>();
    const probe: Subscriber = {
      name: "ordered-probe" as Subscriber["name"],
      handles: { courses: ["CourseCreated", "CourseUpdated"] },
      async setup(tx) {
        await tx.execute("create table if not exists ordered_probe (n integer primary key autoincrement, what text not null)", [], "run");
      },
      async apply(e, tx) {
        const left = failuresOf.get(e.aggregate_id) ?? 0;
        if (left > 0) {
          failuresOf.set(e.aggregate_id, left - 1);
          throw Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
        }
        await tx.execute("insert into ordered_probe (what) values (?)", [`${e.event_type} ${e.aggregate_id}`], "run");
      },
    };
    const applied = async () => ((await m.tx.execute("select what from ordered_probe order by n", [], "all")) as { what: string }[]).map((r) => r.what);
    const created = (id: string) => envelope("CourseCreated", id, 1, { course_id: id, title: id, instructor_id: "i", policy_id: "p" });
    beforeEach(async () => {
      failuresOf = new Map();
      await probe.setup!(m.tx);
    });

    it("are applied in stream order when one fails in its batch: the ones after it wait", async () => {
      failuresOf.set("k2", 3);
      for (const id of ["k1", "k2", "k3", "k4"]) await publish(created(id), "courses");
      const runner = await run(probe);
      await until("all four applied", async () => (await applied()).length === 4);
      expect(await applied()).toEqual(["CourseCreated k1", "CourseCreated k2", "CourseCreated k3", "CourseCreated k4"]);
      // The batch's attempt and two in place failed.
      expect(runner.stats.retries).toBe(2);
      // Acknowledged by floor once they are all in.
      await until("the floor covers them", async () => (await jsm.consumers.info("EVENTS_COURSES", "ordered-probe")).num_ack_pending === 0);
    });

    it("one with a number its column cannot hold (PostgreSQL's 22003) is parked at once, not retried in place while every later event waits (hostile-input audit)", async () => {
      const tooLarge = new Set(["n2"]);
      const numbers: Subscriber = {
        ...probe,
        async apply(e, tx) {
          if (tooLarge.has(e.aggregate_id)) throw Object.assign(new Error('value "2147483648" is out of range for type integer'), { code: "22003" });
          await probe.apply!(e, tx);
        },
      };
      for (const id of ["n1", "n2", "n3"]) await publish(created(id), "courses");
      const runner = await run(numbers, { maxDeliver: 3, backoffMs: [5_000] });
      await until("n1 and n3 applied", async () => (await applied()).length === 2);
      expect(await applied()).toEqual(["CourseCreated n1", "CourseCreated n3"]);
      expect(runner.stats.retries).toBe(0);
      expect(await new DeadLetters(m.db).list("ordered-probe")).toMatchObject([{ event_id: expect.any(String), attempts: 1, reason: expect.stringContaining("out of range") }]);
    });

    it("a stop while one is being retried does not wait it out, and leaves it and every later event unacknowledged", async () => {
      failuresOf.set("s2", 1_000_000);
      for (const id of ["s1", "s2", "s3"]) await publish(created(id), "courses");
      // The second retry's back-off outlasts the test's own timeout: a stop that waited it out would time out.
      const first = await run(probe, { maxDeliver: 3, backoffMs: [50, 10 * 60_000] });
      await until("s2 is being retried", () => first.stats.retries >= 2);
      await first.stop();
      runners.splice(runners.indexOf(first), 1);
      expect(await applied()).toEqual(["CourseCreated s1"]);
      // s1 acknowledged; s2 and s3 neither applied nor acknowledged, for the consumer's next holder.
      await nc.flush();
      const info = await jsm.consumers.info("EVENTS_COURSES", "ordered-probe");
      const s1 = (await jsm.streams.getMessage("EVENTS_COURSES", { last_by_subj: "events.courses.CourseCreated.s1" }))!.seq;
      expect(info.ack_floor.stream_seq).toBe(s1);
      expect(info.num_ack_pending).toBe(2);
      expect(await new DeadLetters(m.db).list("ordered-probe")).toEqual([]);
    });

    describe("failures counted by the runner, not deliveries", () => {
      // The probe, failing with a bug (not transient) the next `failures` times.
      let failures = 0;
      const buggy: Subscriber = {
        ...probe,
        async apply(e, tx) {
          if (failures-- > 0) throw new Error("a bug");
          await tx.execute("insert into ordered_probe (what) values (?)", [`${e.event_type} ${e.aggregate_id}`], "run");
        },
      };
      // Delivers the durable's next message `times` times, each handed back unhandled (as before a crash, a hand-off or an ack_wait run out).
      async function deliverUnhandled(times: number): Promise<void> {
        await new ConsumerRunner(jetstream(nc), jsm, new EventHandler(m.db, buggy), new DeadLetters(m.db), quiet).ensure();
        const consumer = await jetstream(nc).consumers.get("EVENTS_COURSES", "ordered-probe");
        for (let i = 0; i < times; i++) {
          const msg = await consumer.next({ expires: 5_000 });
          expect(msg?.info.deliveryCount).toBe(i + 1);
          msg!.nak();
        }
      }

      it("an event delivered three times before without failing gets its retries: it was parked on its first failure", async () => {
        await publish(created("r1"), "courses");
        await deliverUnhandled(3);
        // The batch's attempt and the first in place fail; the second in place goes through.
        failures = 2;
        const runner = await run(buggy, { maxDeliver: 3, backoffMs: [30] });
        await until("applied", async () => (await applied()).length === 1);
        expect(runner.stats.deadLettered).toBe(0);
        expect(runner.stats.retries).toBe(1);
        expect(await new DeadLetters(m.db).list("ordered-probe")).toEqual([]);
      });

      it("an event delivered past the policy's bound is parked on its first failure here (one that takes the process down while retried)", async () => {
        await publish(created("r2"), "courses");
        await deliverUnhandled(4);
        failures = 1_000;
        const runner = await run(buggy, { maxDeliver: 3, backoffMs: [30], parkAtDelivery: 5 });
        const dead = new DeadLetters(m.db);
        await until("parked", async () => (await dead.list("ordered-probe")).length === 1);
        expect(runner.stats.retries).toBe(0);
        expect((await dead.list("ordered-probe"))[0]).toMatchObject({ event_type: "CourseCreated", attempts: 1, reason: "delivered 5 times, parked at its first failure in this process: a bug" });
      });
    });
  });
});

describe("isTransientFailure", () => {
  it("tells the surroundings' failures from the event's own", () => {
    expect(isTransientFailure(nerveError("unavailable"))).toBe(true);
    expect(isTransientFailure(nerveError("internal"))).toBe(false);
    expect(isTransientFailure(new NerveError("internal", "commit failed", { cause: Object.assign(new Error("busy"), { code: "SQLITE_BUSY_SNAPSHOT" }) }))).toBe(false);
    expect(isTransientFailure(Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" }))).toBe(true);
    expect(isTransientFailure(Object.assign(new Error("disk full"), { code: "SQLITE_FULL" }))).toBe(true);
    expect(isTransientFailure(Object.assign(new Error("UNIQUE constraint failed"), { code: "SQLITE_CONSTRAINT_PRIMARYKEY" }))).toBe(false);
    expect(isTransientFailure(Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }))).toBe(true);
    expect(isTransientFailure(Object.assign(new Error("could not serialize access"), { code: "40001" }))).toBe(true);
    expect(isTransientFailure(Object.assign(new Error("duplicate key value"), { code: "23505" }))).toBe(false);
    expect(isTransientFailure(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }))).toBe(true);
    expect(isTransientFailure(new Error("wrapped", { cause: Object.assign(new Error("x"), { code: "ECONNRESET" }) }))).toBe(true);
    expect(isTransientFailure(new Error("Connection terminated unexpectedly"))).toBe(true);
    expect(isTransientFailure(new WriteWorkerStopped("stopped"))).toBe(true);
    expect(isTransientFailure(new FencedError(["consumers/catalog"]))).toBe(true);
    expect(isTransientFailure(new TypeError("Cannot read properties of undefined"))).toBe(false);
    expect(isTransientFailure("a string")).toBe(false);
  });
});
