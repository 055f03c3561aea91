import { describe, expect, it, onTestFinished, vi } from "vitest";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { decodeMsgPack, encodeMsgPack } from "../../contracts/index.js";
import { createLogger } from "../../src/log/index.js";
import { OutboxRelay, type RelayOptions } from "../../src/outbox/index.js";
import { GroupCommitWriter, Repository, type Database } from "../../src/persistence/index.js";
import { captureLog, profileWrite } from "../support/index.js";
import { byAggregate, streamed, useRelayHarness } from "./support.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
let db: Database;
useRelayHarness((h) => ({ nc, jsm, db } = h));

describe("OutboxRelay", () => {
  it("does not publish again what the stream already holds, even past the duplicate window", async () => {
    const writer = new GroupCommitWriter(db);
    const repo = new Repository(db);
    const ids = ["0190a0b0-0000-7000-8000-000000000001", "0190a0b0-0000-7000-8000-000000000002"];
    await writer.submit(profileWrite("u1", 1, ids[0]!));
    await writer.submit(profileWrite("u1", 2, ids[1]!));
    // The crash: JetStream stored version 1, the process died before marking its outbox row.
    const h = headers();
    h.set("Nats-Msg-Id", ids[0]!);
    await jetstream(nc).publish("events.users.UserProfileUpdated.u1", encodeMsgPack({ aggregate_version: 1 }), { headers: h });
    await new Promise((r) => setTimeout(r, 300));

    const relay = new OutboxRelay({ repo, js: jetstream(nc), jsm, logger: createLogger("silent"), window: 16 });
    relay.start();
    expect(await relay.flush(5000)).toBe(true);
    await relay.stop();
    const info = await jsm.streams.info("EVENTS_USERS");
    expect(info.state.messages).toBe(2);
    expect(relay.stats.verified).toBe(1);
    expect(relay.stats.published).toBe(1);
    const last = await jsm.streams.getMessage("EVENTS_USERS", { last_by_subj: "events.users.UserProfileUpdated.u1" });
    expect(last?.header?.get("Nats-Msg-Id")).toBe(ids[1]);
  });

  it("does not publish again the rows acknowledged before a crash whose deletes never committed, past the duplicate window", async () => {
    const writer = new GroupCommitWriter(db);
    const repo = new Repository(db);
    const ids = [1, 2, 3].map((v) => `0190a0b0-0000-7000-8000-00000000010${v}`);
    for (let v = 1; v <= 3; v++) await writer.submit(profileWrite("u2", v, ids[v - 1]!));
    // The crash: versions 1 and 2 stored and acknowledged, their rows' deletes not yet committed.
    for (const v of [1, 2]) {
      const h = headers();
      h.set("Nats-Msg-Id", ids[v - 1]!);
      await jetstream(nc).publish("events.users.UserProfileUpdated.u2", encodeMsgPack({ aggregate_version: v }), { headers: h });
    }
    await new Promise((r) => setTimeout(r, 300)); // past the duplicate window

    const relay = new OutboxRelay({ repo, js: jetstream(nc), jsm, logger: createLogger("silent"), window: 16 });
    relay.start();
    expect(await relay.flush(5000)).toBe(true);
    await relay.stop();
    // Version 3 published; 1 and 2 found in the stream, not stored twice.
    expect(relay.stats.verified).toBe(2);
    expect(relay.stats.published).toBe(1);
    const versions: number[] = [];
    const { state } = await jsm.streams.info("EVENTS_USERS");
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      const m = await jsm.streams.getMessage("EVENTS_USERS", { seq }).catch(() => null);
      if (m?.subject !== "events.users.UserProfileUpdated.u2") continue;
      const d = decodeMsgPack(m.data);
      versions.push(d.ok ? (d.value as { aggregate_version: number }).aggregate_version : -1);
    }
    expect(versions).toEqual([1, 2, 3]);
  });

  it("looks each queued row up as its own message: one the stream lacks below the aggregate's last version is published (late, reported), not taken for stored", async () => {
    const writer = new GroupCommitWriter(db);
    const repo = new Repository(db);
    const id = (a: string, v: number) => `0190a0b0-0000-7000-a000-${a === "g1" ? "1" : "2"}${String(v).padStart(11, "0")}`;
    for (let v = 1; v <= 5; v++) for (const a of ["g1", "g2"]) await writer.submit(profileWrite(a, v, id(a, v)));
    // What a former relay left: g1's versions 1, 3 and 4 stored — 2 was committed without the relay hearing
    // of it — and g2's 1 to 3, other aggregates' messages between them. Published and deleted: g1's 1 and 3, g2's 1.
    const put = async (aggregate: string, msgId: string, version: number) => {
      const h = headers();
      h.set("Nats-Msg-Id", msgId);
      await jetstream(nc).publish(`events.users.UserProfileUpdated.${aggregate}`, encodeMsgPack({ aggregate_id: aggregate, aggregate_version: version }), { headers: h });
    };
    let noise = 0;
    for (const [a, v] of [["g1", 1], ["g2", 1], ["g1", 3], ["g2", 2], ["g1", 4], ["g2", 3]] as const) {
      await put(a, id(a, v), v);
      for (let n = 0; n < 5; n++) await put(`noise${noise}`, `0190a0b0-0000-7000-b000-${String(noise++).padStart(12, "0")}`, 1);
    }
    const gone = [id("g1", 1), id("g1", 3), id("g2", 1)];
    await db.execute(`delete from nerve_outbox where event_id in (?, ?, ?)`, gone, "run");
    await new Promise((r) => setTimeout(r, 300)); // past the duplicate window

    const log = captureLog("error");
    const relay = new OutboxRelay({ repo, js: jetstream(nc), jsm, logger: log.logger, window: 16 });
    relay.start();
    expect(await relay.flush(5000)).toBe(true);
    await relay.stop();
    const seen = byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((x) => x.startsWith("g")));
    // g1's version 2 goes out behind 4 — late, but there; g2's stored 2 and 3 are not published again.
    expect(seen.get("g1")).toEqual([1, 3, 4, 2, 5]);
    expect(seen.get("g2")).toEqual([1, 2, 3, 4, 5]);
    expect(relay.stats.verified).toBe(3);
    expect(relay.stats.gaps).toBe(1);
    expect(relay.stats.published).toBe(4);
    expect(log.errors()).toEqual([expect.objectContaining({ aggregate_id: "g1", aggregate_version: 2, stream_version: 4, msg: expect.stringContaining("missing from the stream") })]);
  });

  it("keeps per-aggregate order while publishing many aggregates with a bounded window", async () => {
    const writer = new GroupCommitWriter(db);
    const repo = new Repository(db);
    const writes: Promise<void>[] = [];
    for (let v = 1; v <= 5; v++) {
      for (let a = 0; a < 40; a++) writes.push(writer.submit(profileWrite(`w${a}`, v, `0190a0b0-0000-7000-9000-${String(a * 10 + v).padStart(12, "0")}`)));
      await Promise.all(writes);
    }
    const relay = new OutboxRelay({ repo, js: jetstream(nc), jsm, logger: createLogger("silent"), window: 8 });
    relay.start();
    expect(await relay.flush(10_000)).toBe(true);
    await relay.stop();
    for (const a of [0, 17, 39]) {
      const seen: number[] = [];
      const c = await jsm.consumers.add("EVENTS_USERS", { filter_subject: `events.users.UserProfileUpdated.w${a}` });
      const consumer = await jetstream(nc).consumers.get("EVENTS_USERS", c.name);
      const batch = await consumer.fetch({ max_messages: 10, expires: 1000 });
      for await (const m of batch) {
        const d = decodeMsgPack(m.data);
        seen.push(d.ok ? (d.value as { aggregate_version: number }).aggregate_version : -1);
        m.ack();
        if (seen.length === 5) break;
      }
      expect(seen).toEqual([1, 2, 3, 4, 5]);
    }
  });
});

let eventNo = 0;
/** A fresh, valid, unique event id. */
function nextEventId(): string {
  eventNo++;
  return `0190a0b1-0000-7000-8000-${String(eventNo).padStart(12, "0")}`;
}

/** A relay fed by `writer` as Nerve wires it: the writer hands over committed rows and deletes the published ones. Not started; stopped when the test ends, failed or not. */
function wiredRelay(writer: GroupCommitWriter, opts: Omit<RelayOptions, "repo" | "js" | "jsm" | "logger" | "deleter">): OutboxRelay {
  const relay = new OutboxRelay({ repo: new Repository(db), js: jetstream(nc), jsm, logger: createLogger("silent"), deleter: writer, ...opts });
  writer.on("committed", (rows) => relay.offer(rows));
  // A failed test's relay would go on publishing (and retrying) into the next test's stream.
  onTestFinished(() => relay.stop());
  return relay;
}

describe("OutboxRelay fed by the writer", () => {
  it("publishes what the writer hands over from memory, in per-aggregate order, and the writer deletes the rows", async () => {
    const writer = new GroupCommitWriter(db);
    const repo = new Repository(db);
    const relay = wiredRelay(writer, { window: 8 });
    relay.start();
    const ids = Array.from({ length: 30 }, (_, i) => `m${i}`);
    for (let v = 1; v <= 6; v++) await Promise.all(ids.map((id) => writer.submit(profileWrite(id, v, nextEventId()))));
    expect(await relay.flush(10_000)).toBe(true);
    await relay.stop();
    const seen = byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((x) => x.startsWith("m")));
    expect([...seen.keys()].sort()).toEqual([...ids].sort());
    for (const id of ids) expect(seen.get(id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(relay.stats.livePasses).toBeGreaterThan(0);
    // One read of the table at start; everything after came from memory.
    expect(relay.stats.scans).toBe(1);
    expect(writer.stats.outboxRowsDeleted).toBe(180);
    expect(await repo.outboxSize()).toBe(0);
  });

  // Memory overflows by its rows, or by their bytes (a body here is about 70 bytes: 60 rows' worth).
  it.each([
    ["rows", "t", { memoryLimit: 60 }],
    ["bytes", "b", { memoryBytesLimit: 60 * 70 }],
  ] as const)("takes over from the table without a gap or a repeat while commits keep coming, also when memory overflows (%s)", async (_by, stem, limit) => {
    const writer = new GroupCommitWriter(db);
    // A backlog the relay must read in several passes, then commits during and after the scans.
    const ids = Array.from({ length: 40 }, (_, i) => `${stem}${i}`);
    for (let v = 1; v <= 5; v++) await Promise.all(ids.map((id) => writer.submit(profileWrite(id, v, nextEventId()))));
    const relay = wiredRelay(writer, { window: 4, batchSize: 50, ...limit });
    relay.start();
    for (let v = 6; v <= 15; v++) {
      await Promise.all(ids.map((id) => writer.submit(profileWrite(id, v, nextEventId()))));
      await new Promise((r) => setImmediate(r));
    }
    expect(await relay.flush(15_000)).toBe(true);
    expect(relay.stats.scans).toBeGreaterThan(1);
    expect(relay.stats.overflows).toBeGreaterThan(0);
    // Caught up, it is live again: the next commits come from memory.
    const live = relay.stats.livePasses;
    await Promise.all(ids.map((id) => writer.submit(profileWrite(id, 16, nextEventId()))));
    expect(await relay.flush(15_000)).toBe(true);
    await relay.stop();
    expect(relay.stats.livePasses).toBeGreaterThan(live);
    const seen = byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((x) => x.startsWith(stem) && /^\D+\d+@/.test(x)));
    for (const id of ids) expect(seen.get(id), id).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    expect(relay.stats.published).toBe(640);
  });

  it("while live, looks in the table now and then: a row committed without being handed over is published too", async () => {
    const writer = new GroupCommitWriter(db);
    const relay = wiredRelay(writer, { window: 8, rescanMs: 300, pollMs: 50 });
    relay.start();
    await writer.submit(profileWrite("r1", 1, nextEventId()));
    expect(await relay.flush(10_000)).toBe(true);
    // A commit the relay never hears of (as one whose answer was lost): another writer, not wired to it.
    const unheard = new GroupCommitWriter(db);
    await unheard.submit(profileWrite("r2", 1, nextEventId()));
    await writer.submit(profileWrite("r1", 2, nextEventId()));
    expect(await relay.flush(10_000)).toBe(true);
    await relay.stop();
    const seen = byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((x) => x.startsWith("r")));
    expect(seen.get("r1")).toEqual([1, 2]);
    expect(seen.get("r2")).toEqual([1]);
    expect(relay.stats.livePasses).toBeGreaterThan(0);
    // Found by a look in the table, read then with the stream check: not a scan every 300 ms.
    expect(relay.stats.lateScans).toBeGreaterThanOrEqual(1);
    expect(relay.stats.scans).toBeLessThanOrEqual(2 + relay.stats.lateScans);
  });

  it("goes back to the table after a failed publish and loses or repeats nothing once the stream is there", async () => {
    const writer = new GroupCommitWriter(db);
    const repo = new Repository(db);
    const relay = wiredRelay(writer, { window: 8 });
    relay.start();
    // No stream takes events.orders.> yet: every publish fails until it is created.
    const ids = ["f1", "f2", "f3"];
    for (let v = 1; v <= 4; v++) await Promise.all(ids.map((id) => writer.submit(profileWrite(id, v, nextEventId(), "orders"))));
    await vi.waitFor(() => expect(relay.stats.failures).toBeGreaterThan(0), { timeout: 10_000 });
    expect(await repo.outboxSize()).toBe(12);
    await jsm.streams.add({ name: "RELAY_TEST_ORDERS", subjects: ["events.orders.>"] });
    for (let v = 5; v <= 6; v++) await Promise.all(ids.map((id) => writer.submit(profileWrite(id, v, nextEventId(), "orders"))));
    expect(await relay.flush(15_000)).toBe(true);
    await relay.stop();
    const seen = byAggregate(await streamed(nc, jsm, "RELAY_TEST_ORDERS", "events.orders.>"));
    for (const id of ids) expect(seen.get(id), id).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("admits a group commit only while at most the limit of committed rows awaits JetStream's ack", async () => {
    const limit = 10;
    const admittedAt: number[] = [];
    let relay: OutboxRelay | undefined;
    const writer = new GroupCommitWriter(db, {
      admission: () => {
        const wait = relay!.room(limit, 10_000);
        if (!wait) return void admittedAt.push(relay!.backlog);
        return wait.then(() => void admittedAt.push(relay!.backlog));
      },
    });
    relay = wiredRelay(writer, { window: 4 });
    expect(relay.backlog).toBe(0);
    relay.start();
    expect(await relay.flush(10_000)).toBe(true);
    // Rounds of 200 aggregates: with 4 publishes in flight, each round takes the relay many round trips.
    const ids = Array.from({ length: 200 }, (_, i) => `adm${i}`);
    for (let v = 1; v <= 3; v++) {
      await Promise.all(ids.map((id) => writer.submit(profileWrite(id, v, nextEventId()))));
      if (v < 3) expect(relay.backlog).toBeGreaterThan(limit);
    }
    expect(writer.stats.admissionWaits).toBeGreaterThanOrEqual(2);
    expect(admittedAt.length).toBeGreaterThanOrEqual(3);
    for (const b of admittedAt) expect(b).toBeLessThanOrEqual(limit);
    expect(await relay.flush(15_000)).toBe(true);
    expect(relay.backlog).toBe(0);
    expect(relay.room(0, 1000)).toBeUndefined();
    await relay.stop();
    const seen = byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((x) => x.startsWith("adm")));
    for (const id of ids) expect(seen.get(id), id).toEqual([1, 2, 3]);
  });
});
