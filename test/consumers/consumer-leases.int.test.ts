/**
 * The consumer manager under its leases, on a real PostgreSQL and a real nats-server: a consumer taken
 * over is pulled at once when its former holder left nothing out, else once what it left out is due
 * again (by the server's clock), never earlier; a lease that lapses and is taken again during that wait
 * starts one reader; a start that fails is tried again while the lease is held here, rather than leaving
 * the durable unread.
 */
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import type { NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, DeliverPolicy, jetstream, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import type { EnvelopeBase } from "../../contracts/index.js";
import { CONSUMER_GROUP, ConsumerManager, consumerEntities } from "../../src/consumers/index.js";
import { Leases, clusterEntities, leaseName } from "../../src/cluster/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { catalogCourse, createSubscribers, readModelEntities } from "../../src/projections/index.js";
import { txOf } from "../../src/consumers/index.js";
import { postgresAvailable, tempPostgres, until, useNatsWithStreams, type TempPostgres } from "../support/index.js";
import { FakeBus, envelope, publishEvent, quiet } from "../projections/fixtures.js";

const available = await postgresAvailable();
const TTL = 1200;
const RENEW = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const created = (id: string): EnvelopeBase => envelope("CourseCreated", id, 1, { course_id: id, title: `Course ${id}`, instructor_id: "i1", policy_id: "p1" });

let nc: NatsConnection;
let jsm: JetStreamManager;
useNatsWithStreams((h) => ({ nc, jsm } = h));

const publishCourse = (id: string) => publishEvent(nc, created(id));

/**
 * A former holder that took `n` of `events` courses' events and never acknowledged them (it crashed, or its
 * pull was still open when it stopped): catalog's durable, with an ack_wait of `ackWaitMs`, holds them out.
 * Returns when (performance.now()) they were pulled: the server delivered them after it.
 */
async function strand(n: number, events: number, ackWaitMs: number): Promise<number> {
  await jsm.consumers.add("EVENTS_COURSES", { durable_name: "catalog", ack_policy: AckPolicy.All, deliver_policy: DeliverPolicy.All, ack_wait: nanos(ackWaitMs), max_ack_pending: 1000 });
  const first = (await jsm.streams.info("EVENTS_COURSES")).state.last_seq;
  for (let i = 0; i < events; i++) await publishCourse(`stranded-${first}-${i}`);
  const pulledAt = performance.now();
  const former = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
  if (n > 0) for await (const _ of await former.fetch({ max_messages: n, expires: 2_000 })) void _;
  const info = await jsm.consumers.info("EVENTS_COURSES", "catalog");
  expect(info.num_ack_pending).toBe(n);
  expect(info.num_waiting).toBe(0);
  return pulledAt;
}

// A lease row as a former holder left it: released (owner null) or lapsed after a crash.
const leftBy = (db: Database, how: "released" | "crashed") =>
  how === "released"
    ? db.execute("insert into nerve_leases (lease_key, owner, epoch, lease_until) values (?, null, 1, now() - interval '1 second')", [leaseName(CONSUMER_GROUP, "catalog")], "run")
    : db.execute("insert into nerve_leases (lease_key, owner, epoch, lease_until) values (?, 'crashed', 1, now() - interval '1 second')", [leaseName(CONSUMER_GROUP, "catalog")], "run");

describe.skipIf(!available)("consumer leases", () => {
  let pg: TempPostgres;
  let db: Database;
  let leases: Leases;
  let consumers: ConsumerManager;
  let lines: { level: number; msg: string }[];
  const opened: Database[] = [];

  beforeEach(async () => {
    pg = await tempPostgres();
    db = await openDatabase({ url: pg.url, entities: [...consumerEntities, ...readModelEntities, ...clusterEntities] });
    lines = [];
  });
  afterEach(async () => {
    await consumers?.stop();
    for (const d of opened.splice(0)) await d.close().catch(() => undefined);
    await db.close();
    await jsm.consumers.delete("EVENTS_COURSES", "catalog").catch(() => false);
    await pg.drop(); // last: it throws when the database stays behind
  });

  const start = async (takeoverDelayMs: number, maxHandedBack?: number) => {
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    const logger = pino({ level: "info" }, sink);
    const catalog = createSubscribers({ bus: new FakeBus().bus, db, logger: quiet }).find((s) => s.name === "catalog")!;
    leases = new Leases({ db, instanceId: "a", logger, group: CONSUMER_GROUP, keys: ["catalog"], ttlMs: TTL, renewEveryMs: RENEW });
    // backlogLimit: each open reader shows in the runner's `backlogs`.
    consumers = new ConsumerManager({ db, js: jetstream(nc), jsm, logger, subscribers: [catalog], leases, takeoverDelayMs, maxHandedBack, backlogLimit: 1_000_000, lagLogMs: 0 });
    await consumers.start();
    return consumers.runners.get("catalog")!;
  };

  // Until the runner reads, once a take's wait is over.
  const runnerStarted = () => until("the runner started", () => consumers.active().includes("catalog"), 20_000, 20);
  // Until catalog has acknowledged everything the stream holds now.
  const floorAtStreamEnd = async () => {
    const last = (await jsm.streams.info("EVENTS_COURSES")).state.last_seq;
    await until("the floor reaches the stream's end", async () => (await jsm.consumers.info("EVENTS_COURSES", "catalog")).ack_floor.stream_seq === last, 15_000);
  };

  // The holder crashes (its lease left to lapse), this instance takes the consumer: its runner reads within 5 s.
  const takenFromACrash = async () => {
    await leftBy(db, "crashed");
    const takenAt = performance.now();
    const runner = await start(20_000);
    await runnerStarted();
    expect(performance.now() - takenAt).toBeLessThan(5_000);
    return runner;
  };

  it("starts one reader when the lease lapses and is taken again while it waits for a crashed holder's deliveries, once they are due", async () => {
    // The last holder crashed holding 3 deliveries (ack_wait 4 s): its lease lapsed without a release. They
    // are waited for here (nothing handed back), so that the lease lapses and is taken again meanwhile.
    const pulledAt = await strand(3, 10, 4000);
    await leftBy(db, "crashed");
    const runner = await start(20_000, 0);
    expect(leases.fence("catalog")?.epoch).toBe(2);

    // A database stall: the renewals wait on a lock past the lease's validity, the lease is given up, then taken again.
    const other = await openDatabase({ url: pg.url, entities: [], idleInTransactionMs: 10_000 });
    opened.push(other);
    await other.connection.transactional(async (trx) => {
      await other.execute("select * from nerve_instances where grp = ? for update", [CONSUMER_GROUP], "all", trx);
      await until("the lease is given up", () => leases.stats.lost >= 1, 5_000);
    });
    await until("the lease is taken again", () => leases.fence("catalog")?.epoch === 3, 5_000);

    // Only the second take may start the runner, once, and not before the stranded deliveries are due
    // (4 s after they were pulled); and well before the 20 s bound, which it no longer waits out.
    await runnerStarted();
    const startedAt = performance.now();
    expect(runner.backlogs.size).toBe(1);
    expect(startedAt - pulledAt).toBeGreaterThanOrEqual(4000);
    expect(startedAt - pulledAt).toBeLessThan(15_000);

    for (let i = 0; i < 30; i++) await publishCourse(`lease-${i}`);
    await floorAtStreamEnd();
    expect(runner.stats.ackHolds).toBe(0);
  }, 60_000);

  it("hands a crashed holder's deliveries back and reads them first, at once", async () => {
    // Was (8701a0e..5da3ebb): waited until they were due again, ack_wait after their delivery (chaos runs:
    // ~25-35 s a take under load); before that, ack_wait after every take.
    await strand(3, 10, 20_000);
    const runner = await takenFromACrash();
    expect(lines.some((l) => l.msg === "handed a former holder's deliveries back to JetStream before pulling")).toBe(true);
    await floorAtStreamEnd();
    // The three came back to the first pull, before any newer message: had the reader read newer ones while
    // they were out, it would have held its acks behind them.
    expect(runner.stats.ackHolds).toBe(0);
  }, 60_000);

  it("hands them back when the former holder's last delivery was a redelivery it acknowledged", async () => {
    // Its ack by floor put the floor's delivery sequence on the last delivery: a NAK naming that sequence is
    // ignored by the server, and the reader pulled newer messages while two were still out (review).
    await strand(0, 10, 20_000);
    const former = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
    const first: JsMsg[] = [];
    for await (const m of await former.fetch({ max_messages: 3, expires: 2_000 })) first.push(m);
    // Sent as a request: the server has queued it again once it answers.
    await nc.request((first[0] as JsMsg & { reply: string }).reply, new TextEncoder().encode("-NAK"), { timeout: 2_000 });
    for await (const m of await former.fetch({ max_messages: 1, expires: 2_000 })) {
      expect(m.redelivered).toBe(true);
      await m.ackAck();
    }
    const info = await jsm.consumers.info("EVENTS_COURSES", "catalog");
    expect(info.num_ack_pending).toBe(2);
    expect(info.ack_floor.consumer_seq).toBe(info.delivered.consumer_seq);
    const runner = await takenFromACrash();
    await floorAtStreamEnd();
    expect(runner.stats.ackHolds).toBe(0);
  }, 60_000);

  it("pulls at once a consumer taken from a crashed holder that left nothing out", async () => {
    // Was: a take after a crash waited ack_wait (30 s) whatever the durable held: access-grants stalled
    // 65–100 s in a chaos run of a PostgreSQL cluster.
    await strand(0, 5, 30_000);
    await takenFromACrash();
    expect(consumers.takes.get("catalog")?.takes).toBe(1);
    expect(consumers.takes.get("catalog")?.waitedMs).toBeLessThan(5_000);
    await floorAtStreamEnd();
  }, 60_000);

  it("waits for a crashed holder's deliveries it cannot hand back until they are due by the server's clock, then reads them first", async () => {
    const pulledAt = await strand(3, 10, 3000);
    await leftBy(db, "crashed");
    // 0: too many to name, whatever they are.
    const runner = await start(20_000, 0);
    await runnerStarted();
    const startedAt = performance.now();
    // Due 3 s after their delivery (plus a margin), not a whole bound after the take.
    expect(startedAt - pulledAt).toBeGreaterThanOrEqual(3000);
    expect(startedAt - pulledAt).toBeLessThan(15_000);
    expect(lines.some((l) => l.msg === "waiting for a former holder's deliveries to come back before pulling")).toBe(true);
    expect(consumers.takes.get("catalog")?.takes).toBe(1);
    expect(consumers.takes.get("catalog")?.waitedMs).toBeGreaterThanOrEqual(2500);
    await floorAtStreamEnd();
    // The three came back to the first pull, before any newer message: had the reader pulled while they were
    // out with the former holder, it would have held its acks behind them (a gap below its deliveries).
    expect(runner.stats.ackHolds).toBe(0);
  }, 60_000);

  it("pulls at once a consumer handed over with deliveries out that are already due", async () => {
    // A holder that took over from a crash and handed the consumer on before pulling (its rendezvous owner
    // came back): what the crashed one left out is still out, but due. Was: the next holder waited for the
    // server's outstanding count to fall, which no pull made it do, for the whole bound.
    const pulledAt = await strand(3, 10, 2000);
    await sleep(Math.max(0, pulledAt + 3500 - performance.now()));
    await leftBy(db, "released");
    const takenAt = performance.now();
    await start(20_000);
    await runnerStarted();
    expect(performance.now() - takenAt).toBeLessThan(5_000);
    await floorAtStreamEnd();
  }, 60_000);

  it("does not pull while a former holder's pull request still waits at the server", async () => {
    // A holder cut off (not closed): its open pull request could still be handed the next messages, after
    // which this reader's would come first. Nothing is out; its request expires after 4 s.
    await strand(0, 3, 30_000);
    const former = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
    // It read and acknowledged what there was; its next request finds nothing and waits.
    for await (const m of await former.fetch({ max_messages: 1000, expires: 1_000 })) await m.ackAck();
    expect((await jsm.consumers.info("EVENTS_COURSES", "catalog")).num_ack_pending).toBe(0);
    const waiting = (async () => {
      for await (const _ of await former.fetch({ max_messages: 100, expires: 4_000 })) void _;
    })();
    await until("the request waits", async () => (await jsm.consumers.info("EVENTS_COURSES", "catalog")).num_waiting === 1, 5_000, 20);
    const waitingSince = performance.now();
    await leftBy(db, "crashed");
    await start(20_000);
    await runnerStarted();
    expect(performance.now() - waitingSince).toBeGreaterThanOrEqual(3_500);
    expect(performance.now() - waitingSince).toBeLessThan(15_000);
    await waiting;
  }, 60_000);

  it("does not pull while a former holder's request is open, and reads what that request took after the take first", async () => {
    // A frozen holder's pull request stays open past the take (up to its expiry): what is published
    // meanwhile goes to it. Was (review): the wait's bound, ack_wait from the take, ran out first and the
    // new reader pulled newer messages before that one came back.
    await strand(0, 3, 3000);
    const former = await jetstream(nc).consumers.get("EVENTS_COURSES", "catalog");
    for await (const m of await former.fetch({ max_messages: 1000, expires: 1_000 })) await m.ackAck();
    const frozen = (async () => {
      for await (const _ of await former.fetch({ max_messages: 1, expires: 5_000 })) void _;
    })();
    await until("the request waits", async () => (await jsm.consumers.info("EVENTS_COURSES", "catalog")).num_waiting === 1, 5_000, 20);
    await leftBy(db, "crashed");
    const runner = await start(2_000);
    await sleep(500);
    expect(consumers.active(), "not pulled while the request is open").toEqual([]);
    await publishCourse("into-the-frozen-request");
    await frozen;
    for (let i = 0; i < 5; i++) await publishCourse(`after-frozen-${i}`);
    await runnerStarted();
    // That delivery (handed back, or due) came to the first pull, before the five after it.
    await floorAtStreamEnd();
    expect(runner.stats.ackHolds).toBe(0);
  }, 60_000);

  it("a stop during the wait for a crashed holder's deliveries lets the lease lapse, not release it", async () => {
    // Was: the stop's abort ended the wait's sleep, which then forgot the wait, and the stop released the
    // lease: its next holder took it gracefully and pulled before the crashed holder's deliveries came back
    // (chaos audit, on a PostgreSQL cluster under kill -9 and SIGTERM).
    await db.execute("insert into nerve_leases (lease_key, owner, epoch, lease_until) values (?, 'crashed', 1, now() - interval '1 second')", [leaseName(CONSUMER_GROUP, "catalog")], "run");
    await start(10_000);
    expect(leases.fence("catalog")?.epoch).toBe(2);
    await consumers.stop();
    const row = (await db.execute("select owner, lease_until > now() as live from nerve_leases where lease_key = ?", [leaseName(CONSUMER_GROUP, "catalog")], "get")) as { owner: string | null; live: boolean };
    // Left to lapse: still this instance's, its validity running out (a release writes owner null).
    expect(row.owner).toBe("a");
  });

  it("tries a failed start again while it holds the lease, and reads once the cause is gone", async () => {
    // A durable the runner refuses to use (it filters one type, catalog reads several): its start fails.
    await jsm.consumers.add("EVENTS_COURSES", { durable_name: "catalog", ack_policy: AckPolicy.All, filter_subject: "events.courses.CourseCreated.*" });
    await start(0);
    await until("the failed start is reported", () => lines.some((l) => l.level === 50 && JSON.stringify(l).includes("filters events.courses.CourseCreated.*, expected nothing")), 10_000);
    expect(consumers.active()).toEqual([]);
    expect(leases.fence("catalog")).toBeDefined();

    // The operator removes the durable: the next attempt makes it anew and reads.
    await jsm.consumers.delete("EVENTS_COURSES", "catalog");
    await publishCourse("after-fix");
    await until("the event is applied", async () => (await catalogCourse(txOf(db), "after-fix")) !== undefined, 20_000);
    expect(consumers.active()).toEqual(["catalog"]);
  }, 60_000);
});
