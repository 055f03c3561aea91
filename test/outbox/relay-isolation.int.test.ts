/**
 * A failure holds back only what it concerns: a stream the relay cannot ask or publish to holds back its
 * own aggregates, a row the stream refuses holds back its own aggregate (its later rows wait behind it,
 * in order); every other aggregate is published as fast as without the failure. Once the stream is back
 * or takes the row, what waited goes out, in order and once — also when rows JetStream stored already
 * (acknowledged, not deleted at a crash) wait beyond the first batch and the duplicate window has passed.
 */
import { describe, expect, it, onTestFinished } from "vitest";
import { headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { partitionOf, type Ownership } from "../../src/cluster/index.js";
import { encodeMsgPack } from "../../contracts/index.js";
import { OutboxRelay, type PublishedRowDeleter } from "../../src/outbox/index.js";
import { GroupCommitWriter, Repository, openDatabase, type AggregateWrite, type OutboxRow } from "../../src/persistence/index.js";
import { captureLog, profileWrite, tempSqlitePath, useNatsWithStreams } from "../support/index.js";
import { ManualOwnership, byAggregate, nextEventId, streamed, until, versions } from "./support.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
// EVENTS_ACCESS is missing (deleted by an operator, or its replicas without quorum); EVENTS_USERS takes
// messages of at most 2 KB.
useNatsWithStreams(
  (h) => ({ nc, jsm } = h),
  async (jsm) => {
    await jsm.streams.add({ name: "EVENTS_ORDERS", subjects: ["events.orders.>"], duplicate_window: nanos(120_000) });
    await jsm.streams.add({ name: "EVENTS_USERS", subjects: ["events.users.>"], duplicate_window: nanos(120_000), max_msg_size: 2048 });
    // A duplicate window of a second: what an outage longer than the window leaves the relay.
    await jsm.streams.add({ name: "EVENTS_COURSES", subjects: ["events.courses.>"], duplicate_window: nanos(1000) });
  },
);

/** A write of aggregate `type` whose event goes to `events.<context>.UserProfileUpdated.<id>`. */
const write = (type: string, context: string, id: string, v: number): AggregateWrite => ({ ...profileWrite(id, v, nextEventId("0190a0d0"), context), aggregateType: type });

/** `write` with an event of over 4 KB, which EVENTS_USERS refuses. */
function tooLarge(type: string, context: string, id: string, v: number): AggregateWrite {
  const w = write(type, context, id, v);
  w.events[0]!.body = encodeMsgPack({ event_id: w.events[0]!.event_id, aggregate_id: id, aggregate_version: v, pad: "x".repeat(4000) });
  return w;
}

/** A SQLite database with a writer, and a relay on it wired as Nerve wires them (not started); all closed when the test ends. */
async function wired(opts: { window?: number; batchSize?: number; deleter?: PublishedRowDeleter; releaseWaitMs?: number; ownership?: Ownership; js?: JetStreamClient } = {}) {
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}` });
  const writer = new GroupCommitWriter(db);
  const repo = new Repository(db);
  const log = captureLog("warn");
  const relay = new OutboxRelay({
    repo,
    js: opts.js ?? jetstream(nc),
    jsm,
    logger: log.logger,
    window: opts.window ?? 64,
    ...(opts.ownership ? { ownership: opts.ownership } : {}),
    deleter: opts.deleter ?? writer,
    ...(opts.batchSize ? { batchSize: opts.batchSize } : {}),
    ...(opts.releaseWaitMs ? { releaseWaitMs: opts.releaseWaitMs } : {}),
  });
  writer.on("committed", (rows) => relay.offer(rows));
  onTestFinished(async () => {
    await relay.stop();
    await writer.flushed();
    await db.close();
    await tmp.cleanup();
  });
  return { writer, repo, relay, log };
}

/**
 * Stores `rows` in their stream as a relay that died had published them (acknowledged, their rows not
 * deleted), then lets EVENTS_COURSES's duplicate window (1 s) pass, as a restart after a longer downtime.
 */
async function publishedBeforeTheCrash(rows: readonly OutboxRow[]): Promise<void> {
  const js = jetstream(nc);
  for (const r of rows) {
    const h = natsHeaders();
    h.set("Nats-Msg-Id", r.event_id);
    await js.publish(r.subject, r.body, { headers: h });
  }
  await new Promise((r) => setTimeout(r, 1200));
}

const stored = async (stream: string, subjects: string, prefix: string) => byAggregate((await streamed(nc, jsm, stream, subjects)).filter((s) => s.startsWith(prefix)));

describe("OutboxRelay: one failure holds back only what it concerns", () => {
  it("publishes the other streams' events while one stream is missing, also from a start with rows of both waiting; the missing one's once it is there", async () => {
    const { writer, repo, relay, log } = await wired();
    const orders = Array.from({ length: 50 }, (_, i) => `o${i}`);
    await writer.submit(write("AccessRecord", "access", "a1", 1));
    for (let v = 1; v <= 4; v++) await Promise.all(orders.map((id) => writer.submit(write("Order", "orders", id, v))));
    await writer.submit(write("AccessRecord", "access", "a1", 2));
    relay.start();
    await until("the orders are stored", async () => (await jsm.streams.info("EVENTS_ORDERS")).state.messages === 200, 5000);
    await until("their rows are deleted", async () => (await repo.outboxSize()) === 2, 5000);
    // Commits that keep coming for both: the orders' go out, the access record's wait behind its first two.
    for (const id of orders) await writer.submit(write("Order", "orders", id, 5));
    await writer.submit(write("AccessRecord", "access", "a1", 3));
    await until("the new orders are stored", async () => (await jsm.streams.info("EVENTS_ORDERS")).state.messages === 250, 5000);
    await until("their rows are deleted", async () => (await repo.outboxSize()) === 3, 5000);
    expect(log.lines.some((l) => l.stream === "EVENTS_ACCESS")).toBe(true);

    await jsm.streams.add({ name: "EVENTS_ACCESS", subjects: ["events.access.>"], duplicate_window: nanos(120_000) });
    expect(await relay.flush(10_000)).toBe(true);
    const seenOrders = await stored("EVENTS_ORDERS", "events.orders.>", "o");
    for (const id of orders) expect(seenOrders.get(id), id).toEqual(versions(5));
    expect((await stored("EVENTS_ACCESS", "events.access.>", "a")).get("a1")).toEqual([1, 2, 3]);
    expect(relay.stats.duplicates).toBe(0);
    // Nothing waits any more: it publishes from memory again.
    const live = relay.stats.livePasses;
    await writer.submit(write("AccessRecord", "access", "a1", 4));
    expect(await relay.flush(5000)).toBe(true);
    expect(relay.stats.livePasses).toBeGreaterThan(live);
  });

  it("holds back only the aggregate of a row the stream refuses, logs which row and why, and publishes the rest at full speed", async () => {
    const { writer, repo, relay, log } = await wired({ window: 16 });
    const big = tooLarge("User", "users", "poison", 1);
    const bigId = big.events[0]!.event_id;
    await writer.submit(big);
    await writer.submit(write("User", "users", "poison", 2));
    const ids = Array.from({ length: 1000 }, (_, i) => `c${i}`);
    for (let v = 1; v <= 5; v++) await Promise.all(ids.map((id) => writer.submit(write("User", "users", id, v))));
    relay.start();
    await until("the other aggregates' 5,000 events are stored", async () => (await repo.outboxSize()) === 2, 10_000);
    // Not held back by it: the refused row was tried a few times on its back-off (0.5 s doubling) while the
    // 5,000 went out (about 1 s here), not once a pass (before: every pass failed at it, 2,000 in over 10 s).
    expect(relay.stats.failures).toBeLessThan(10);
    expect(relay.held).toEqual({ streams: 0, aggregates: 1 });
    // Its rows wait in the table, not for JetStream: the writers' admission does not hold commits back for them.
    expect(relay.room(0, 1000)).toBeUndefined();
    const refused = log.lines.find((l) => l.event_id === bigId);
    expect(refused).toMatchObject({ subject: "events.users.UserProfileUpdated.poison", aggregate_id: "poison", code: 10054 });
    // Its later row waits behind it, in the table.
    expect((await stored("EVENTS_USERS", "events.users.>", "poison")).get("poison")).toBeUndefined();

    // The stream takes larger messages now: the refused row goes out, then the one behind it.
    const { config } = await jsm.streams.info("EVENTS_USERS");
    await jsm.streams.update("EVENTS_USERS", { ...config, max_msg_size: 8192 });
    onTestFinished(() => jsm.streams.update("EVENTS_USERS", config).then(() => undefined));
    expect(await relay.flush(40_000)).toBe(true);
    expect(relay.held).toEqual({ streams: 0, aggregates: 0 });
    const seen = await stored("EVENTS_USERS", "events.users.>", "");
    expect(seen.get("poison")).toEqual([1, 2]);
    for (const id of ids) expect(seen.get(id), id).toEqual(versions(5));
  }, 60_000);

  it("after a restart, publishes the rows above a held stream's thousand and more, checking them against the stream first, and does not spin on the held ones (review of the first try)", async () => {
    const { writer, repo, relay } = await wired();
    // EVENTS_POLICIES does not exist: 1,500 rows of it at the bottom of the table, over a read's 1,000.
    const policies = Array.from({ length: 300 }, (_, i) => `p${i}`);
    for (let v = 1; v <= 5; v++) await Promise.all(policies.map((id) => writer.submit(write("RefundPolicy", "policies", id, v))));
    // Above them 200 courses' rows that JetStream stored already, acknowledged and not deleted when the
    // process died; the duplicate window has passed since.
    const courses = Array.from({ length: 100 }, (_, i) => `c${i}`);
    for (let v = 1; v <= 2; v++) await Promise.all(courses.map((id) => writer.submit(write("Course", "courses", id, v))));
    await publishedBeforeTheCrash((await repo.pendingOutbox(10_000)).filter((r) => r.aggregate_type === "Course"));

    relay.start();
    await until("the courses' rows are deleted", async () => (await repo.outboxSize()) === 1500, 10_000);
    const scans = relay.stats.scans;
    await new Promise((r) => setTimeout(r, 2000));
    // Was: each pass read the held rows again from the bottom and looped at once (~300 passes a second).
    expect(relay.stats.scans - scans).toBeLessThan(10);
    expect((await jsm.streams.info("EVENTS_COURSES")).state.messages).toBe(200);
    expect(relay.stats).toMatchObject({ published: 0, duplicates: 0, verified: 200 });
    expect(relay.held.streams).toBe(1);

    await jsm.streams.add({ name: "EVENTS_POLICIES", subjects: ["events.policies.>"] });
    expect(await relay.flush(20_000)).toBe(true);
    const seen = await stored("EVENTS_POLICIES", "events.policies.>", "p");
    for (const id of policies) expect(seen.get(id), id).toEqual(versions(5));
    expect(relay.held.streams).toBe(0);
  }, 60_000);

  it("after a restart, looks rows up in the stream beyond the first batch while batches find them stored: none goes out twice past the duplicate window (was: the first batch only)", async () => {
    const { writer, repo, relay } = await wired({ batchSize: 500 });
    // 1,500 rows, three reads of 500, all stored in the stream already (acknowledged, not deleted: a crash).
    const ids = Array.from({ length: 300 }, (_, i) => `k${i}`);
    for (let v = 1; v <= 5; v++) await Promise.all(ids.map((id) => writer.submit(write("Course", "courses", id, v))));
    const before = (await jsm.streams.info("EVENTS_COURSES")).state.messages;
    await publishedBeforeTheCrash(await repo.pendingOutbox(10_000));
    relay.start();
    expect(await relay.flush(20_000)).toBe(true);
    expect((await jsm.streams.info("EVENTS_COURSES")).state.messages - before).toBe(1500);
    expect(relay.stats).toMatchObject({ published: 0, duplicates: 0, verified: 1500 });
  }, 60_000);

  it("after a restart, looks up every aggregate the first time it comes, not the first batch: stored rows above an aggregate's thousand unpublished ones go out once (second review)", async () => {
    const { writer, repo, relay } = await wired();
    // At the bottom, 1,000 rows of one aggregate that never went out (held behind a refused row last
    // time, say); above them 200 rows of 100 others that JetStream stored, not deleted at a crash.
    const stuck = nextEventId("0190a0d1");
    for (let v = 1; v <= 1000; v++) await writer.submit(write("Course", "courses", `x-${stuck.slice(-4)}`, v));
    const others = Array.from({ length: 100 }, (_, i) => `y${i}`);
    for (let v = 1; v <= 2; v++) await Promise.all(others.map((id) => writer.submit(write("Course", "courses", id, v))));
    const before = (await jsm.streams.info("EVENTS_COURSES")).state.messages;
    await publishedBeforeTheCrash((await repo.pendingOutbox(10_000)).filter((r) => r.aggregate_id.startsWith("y")));
    relay.start();
    expect(await relay.flush(30_000)).toBe(true);
    expect((await jsm.streams.info("EVENTS_COURSES")).state.messages - before).toBe(1200);
    expect(relay.stats).toMatchObject({ published: 1000, duplicates: 0, verified: 200 });
  }, 60_000);

  it("reads rows whose deletes stall (the database's writes stuck) with the stream check: published once, not again every few seconds past the duplicate window (third review)", async () => {
    // A deleter whose deletes never commit: the relay reads the table anyway after releaseWaitMs.
    const stalled = { release: () => undefined, released: () => new Promise<void>(() => undefined) };
    // Reads of 10: the first ten rows are read again at every pass while their deletes do not come.
    const { writer, relay } = await wired({ window: 8, batchSize: 10, deleter: stalled, releaseWaitMs: 200 });
    const ids = Array.from({ length: 10 }, (_, i) => `d${i}`);
    for (let v = 1; v <= 2; v++) await Promise.all(ids.map((id) => writer.submit(write("Course", "courses", id, v))));
    const before = (await jsm.streams.info("EVENTS_COURSES")).state.messages;
    relay.start();
    await until("the first read is published", () => relay.stats.published === 10, 10_000);
    // The duplicate window (1 s) passes several times over while the table is read again and again.
    await new Promise((r) => setTimeout(r, 3000));
    expect((await jsm.streams.info("EVENTS_COURSES")).state.messages - before).toBe(10);
    expect(relay.stats.published).toBe(10);
    expect(relay.stats.verified).toBeGreaterThan(0);
    // (Its next ten wait for the deletes: a read goes from the bottom of the table. Left as it is: the database's writes are stuck.)
  }, 30_000);

  it("makes no hold of a refusal that lands after its partition went: the row is its next owner's, and a hold would outlive the partition (review: it did, for good, and its age fired NerveOutboxStuck)", async () => {
    const own = new ManualOwnership();
    const real = jetstream(nc);
    // The partition goes (a hand-off's lease, say) while the poison row's first publish is on its way.
    let first = true;
    const js = {
      publish: (subject: string, ...rest: unknown[]) => {
        if (subject.endsWith(".gone") && first) {
          first = false;
          own.lose(partitionOf("gone"));
        }
        return (real.publish as (...a: unknown[]) => ReturnType<JetStreamClient["publish"]>)(subject, ...rest);
      },
    } as unknown as JetStreamClient;
    const { writer, relay, log } = await wired({ ownership: own, js });
    await writer.submit(tooLarge("User", "users", "gone", 1));
    relay.start();
    await until("JetStream refused the row", () => relay.stats.failures > 0, 5000);
    expect(log.lines.some((l) => l.code === 10054)).toBe(false);
    expect(relay.held).toEqual({ streams: 0, aggregates: 0 });
    // Its next owner (this one, again) tries it from the table, and holds it there.
    own.acquire(partitionOf("gone"));
    await until("the row is held by its owner", () => relay.held.aggregates === 1, 5000);
  });
});
