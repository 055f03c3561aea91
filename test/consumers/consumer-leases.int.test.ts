/**
 * The consumer manager under its leases, on a real PostgreSQL and a real nats-server: a lease that lapses
 * and is taken again during the takeover delay starts one reader, after the newer take's delay; a start
 * that fails is tried again while the lease is held here, rather than leaving the durable unread.
 */
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import type { NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, jetstream, type JetStreamManager } from "@nats-io/jetstream";
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

  const start = async (takeoverDelayMs: number) => {
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
    consumers = new ConsumerManager({ db, js: jetstream(nc), jsm, logger, subscribers: [catalog], leases, takeoverDelayMs, backlogLimit: 1_000_000, lagLogMs: 0 });
    await consumers.start();
    return consumers.runners.get("catalog")!;
  };

  it("starts one reader when the lease lapses and is taken again during the takeover delay, after the newer take's delay", async () => {
    // The last holder crashed: its lease lapsed without a release, so the takeover waits (here 4 s).
    await db.execute("insert into nerve_leases (lease_key, owner, epoch, lease_until) values (?, 'crashed', 1, now() - interval '1 second')", [leaseName(CONSUMER_GROUP, "catalog")], "run");
    const runner = await start(4000);
    expect(leases.fence("catalog")?.epoch).toBe(2);
    // When the newer take happened, by the lease's own event (not by when a poll noticed it).
    let retaken: number | undefined;
    leases.on("acquired", (name: string, epoch: number) => {
      if (name === "catalog" && epoch === 3) retaken = performance.now();
    });

    // A database stall: the renewals wait on a lock past the lease's validity, the lease is given up, then taken again.
    const other = await openDatabase({ url: pg.url, entities: [], idleInTransactionMs: 10_000 });
    opened.push(other);
    await other.connection.transactional(async (trx) => {
      await other.execute("select * from nerve_instances where grp = ? for update", [CONSUMER_GROUP], "all", trx);
      await until("the lease is given up", () => leases.stats.lost >= 1, 5_000);
    });
    await until("the lease is taken again", () => leases.fence("catalog")?.epoch === 3, 5_000);
    expect(retaken, "the newer take was heard").toBeDefined();

    // The first take's delay ends first, under a stale fence: only the second take may start the runner,
    // once, and not before its own delay (4 s, the configured figure: a lower bound no slow machine breaks;
    // a start by the first take would come at least a lease's lapse, TTL, earlier).
    await until("the runner started", () => consumers.active().includes("catalog"), 15_000, 20);
    const startedAt = performance.now();
    expect(runner.backlogs.size).toBe(1);
    expect(startedAt - retaken!).toBeGreaterThanOrEqual(4000 - 50);

    for (let i = 0; i < 30; i++) await publishCourse(`lease-${i}`);
    const last = (await jsm.streams.info("EVENTS_COURSES")).state.last_seq;
    await until("the floor reaches the stream's end", async () => (await jsm.consumers.info("EVENTS_COURSES", "catalog")).ack_floor.stream_seq === last, 15_000);
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
