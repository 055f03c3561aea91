/**
 * Outbox relays of several instances on one PostgreSQL database (issue #11 item 4), each under real
 * partition leases: a relay publishes only its partitions' rows; one that acquires a partition
 * publishes what the former owner left, once each, in order; one that loses a partition publishes
 * nothing of it afterwards; and every aggregate's versions reach the stream in order across hand-offs.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { connect } from "@nats-io/transport-node";
import { headers, nanos, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { encodeMsgPack } from "../../contracts/index.js";
import { FencedError, PARTITIONS, PartitionLeases, checkFences, clusterEntities, partitionOf } from "../../src/cluster/index.js";
import { OutboxRelay } from "../../src/outbox/index.js";
import { GroupCommitWriter, Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, profileWrite, startNatsServer, tempPostgres, type NatsServerHandle, type TempPostgres } from "../support/index.js";
import { byAggregate, idsWhere, nextEventId, streamed, until, versions } from "./support.js";

const available = await postgresAvailable();
const quiet = pino({ level: "silent" });
const TTL = 1200;
const RENEW = 200;

/** One Nerve instance's outbox path: leases, a fenced writer, and a relay whose publishes are watched. */
interface Instance {
  id: string;
  db: Database;
  leases: PartitionLeases;
  writer: GroupCommitWriter;
  relay: OutboxRelay;
  /** Subjects this instance's relay published while it did not hold their partition: must stay empty. */
  unfenced: string[];
}

let nats: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  if (!available) return;
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, noAsyncTraces: true });
  jsm = await jetstreamManager(nc);
  // A duplicate window far shorter than the contract's: a repeated publish would show as a second message.
  await jsm.streams.add({ name: "EVENTS_USERS", subjects: ["events.users.>"], duplicate_window: nanos(100) });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe.skipIf(!available)("outbox relays of several instances on PostgreSQL", () => {
  let pg: TempPostgres;
  const instances: Instance[] = [];

  beforeEach(async () => {
    pg = await tempPostgres();
  });
  afterEach(async () => {
    for (const i of instances.splice(0)) {
      await i.relay.stop();
      await i.leases.stop().catch(() => undefined);
      await i.db.close().catch(() => undefined);
    }
    await pg.drop();
  });

  /** Starts an instance; its relay starts unless `relay: false` (a relay that crashed before publishing). */
  async function instance(id: string, opts: { relay?: boolean } = {}): Promise<Instance> {
    const db = await openDatabase({ url: pg.url, entities: clusterEntities });
    const writer = new GroupCommitWriter(db, { fenceCheck: (exec, fences) => checkFences(exec, id, fences) });
    const unfenced: string[] = [];
    const js = jetstream(nc);
    // Records a publish of a partition the leases do not grant this instance at that moment.
    const watched = {
      publish: (subject: string, ...rest: Parameters<JetStreamClient["publish"]> extends [string, ...infer R] ? R : never) => {
        if (!leases.fence(partitionOf(subject.split(".").at(-1)!))) unfenced.push(subject);
        return js.publish(subject, ...rest);
      },
    } as unknown as JetStreamClient;
    let relay: OutboxRelay | undefined;
    // A graceful hand-off, as Nerve's: the writer's commits done, then the relay's publishes of the partition.
    const drain = async (p: number) => {
      await writer.flushed();
      await relay!.flushPartition(p, 5000);
    };
    const leases = new PartitionLeases({ db, instanceId: id, logger: quiet, ttlMs: TTL, renewEveryMs: RENEW, drain });
    relay = new OutboxRelay({ repo: new Repository(db), js: watched, jsm, logger: quiet, window: 16, deleter: writer, ownership: leases });
    writer.on("committed", (rows) => relay.offer(rows));
    if (opts.relay !== false) relay.start();
    await leases.start();
    const it: Instance = { id, db, leases, writer, relay, unfenced };
    instances.push(it);
    return it;
  }

  /** Commits version `v` of `id` on whichever instance holds its partition now, as a routed command would. */
  async function write(id: string, v: number): Promise<void> {
    const p = partitionOf(id);
    for (;;) {
      const owner = instances.find((i) => i.leases.fence(p));
      if (owner) {
        try {
          return await owner.writer.submit({ ...profileWrite(id, v, nextEventId("0190a0b4")), fence: owner.leases.fence(p) });
        } catch (err) {
          if (!(err instanceof FencedError)) throw err;
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const split = (a: Instance, b: Instance) => until("the two hold every partition between them", () => a.leases.held().length + b.leases.held().length === PARTITIONS && b.leases.held().length > 0);
  const stored = async (prefix: string) => byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((s) => s.startsWith(prefix)));

  it("(a) each relay publishes the rows of its own partitions and reads no other", async () => {
    const a = await instance("a", { relay: false });
    const b = await instance("b", { relay: false });
    await split(a, b);
    const ids = idsWhere("pa", 40, () => true);
    for (let v = 1; v <= 3; v++) await Promise.all(ids.map((id) => write(id, v)));
    const ofA = ids.filter((id) => a.leases.fence(partitionOf(id))).length;
    expect(ofA).toBeGreaterThan(0);
    expect(ofA).toBeLessThan(ids.length);
    a.relay.start();
    b.relay.start();
    expect(await a.relay.flush(5000)).toBe(true);
    expect(await b.relay.flush(5000)).toBe(true);
    expect(await new Repository(a.db).outboxSize()).toBe(0);
    expect(a.relay.stats.published).toBe(ofA * 3);
    expect(b.relay.stats.published).toBe((ids.length - ofA) * 3);
    // Neither read the other's rows: it would have had to drop them at the fence check.
    expect(a.relay.stats.dropped + b.relay.stats.dropped).toBe(0);
    const seen = await stored("pa");
    for (const id of ids) expect(seen.get(id), id).toEqual(versions(3));
  });

  it("(b) a relay that acquires partitions publishes what their crashed owner left, in order, once each", async () => {
    const a = await instance("a", { relay: false });
    const b = await instance("b");
    await split(a, b);
    const left = idsWhere("pb", 20, (p) => a.leases.fence(p) !== undefined);
    const own = idsWhere("pbo", 10, (p) => b.leases.fence(p) !== undefined);
    for (let v = 1; v <= 4; v++) await Promise.all([...left, ...own].map((id) => write(id, v)));
    // a's relay got version 1 of one aggregate into the stream and died before its row was deleted.
    const [first] = (await a.db.execute<{ event_id: string; subject: string }[]>("select event_id, subject from nerve_outbox where aggregate_id = ? and aggregate_version = 1", [left[0]], "all")) as [{ event_id: string; subject: string }];
    const h = headers();
    h.set("Nats-Msg-Id", first.event_id);
    await jetstream(nc).publish(first.subject, encodeMsgPack({ aggregate_id: left[0], aggregate_version: 1 }), { headers: h });
    await new Promise((r) => setTimeout(r, 200)); // past the duplicate window: only the relay's check can keep it single
    expect(await b.relay.flush(5000)).toBe(true);
    const scans = b.relay.stats.scans;

    await a.db.close(); // a is dead: its leases lapse
    await until("b holds every partition", () => b.leases.held().length === PARTITIONS, 5000);
    expect(await b.relay.flush(5000)).toBe(true);
    expect(b.relay.stats.scans).toBeGreaterThan(scans);
    expect(b.relay.stats.verified).toBe(1);
    // Live again on everything: the next commits come from memory.
    const live = b.relay.stats.livePasses;
    await Promise.all([...left, ...own].map((id) => write(id, 5)));
    expect(await b.relay.flush(5000)).toBe(true);
    expect(b.relay.stats.livePasses).toBeGreaterThan(live);
    const seen = await stored("pb");
    for (const id of [...left, ...own]) expect(seen.get(id), id).toEqual(versions(5));
    expect(b.unfenced).toEqual([]);
  });

  let attemptC = 0;
  it("(c) under load, a joining instance takes partitions over: the former owners publish none of their rows after, and every aggregate stays in order", async () => {
    // Each attempt (vitest retries) writes its own aggregates: the stream outlives an attempt.
    const stem = `pc${++attemptC}-`;
    const a = await instance("a");
    const b = await instance("b");
    await split(a, b);
    const ids = idsWhere(stem, 60, () => true);
    const lostByA: number[] = [];
    a.leases.on("lost", (p) => lostByA.push(p));
    const during = 12;
    const after = 3;
    let c: Instance | undefined;
    for (let v = 1; v <= during; v++) {
      if (v === 4) c = await instance("c");
      await Promise.all(ids.map((id) => write(id, v)));
    }
    // On a fast machine the 12 rounds can end before c's first lease: the rounds after its join
    // make sure c commits and publishes some of the aggregates a and b wrote before.
    await until("c holds its share", () => c!.leases.held().length > 0 && instances.every((i) => i.leases.held().length > 0), 5000);
    for (let v = during + 1; v <= during + after; v++) await Promise.all(ids.map((id) => write(id, v)));
    for (const i of instances) expect(await i.relay.flush(5000), i.id).toBe(true);
    expect(await new Repository(a.db).outboxSize()).toBe(0);
    expect(lostByA.length).toBeGreaterThan(0);
    for (const i of instances) expect(i.unfenced, i.id).toEqual([]);
    const seen = await stored(stem);
    for (const id of ids) expect(seen.get(id), id).toEqual(versions(during + after));
    // Some aggregates written by a or b before the join were then written and published by c.
    expect(c!.relay.stats.published).toBeGreaterThan(0);
  });
});
