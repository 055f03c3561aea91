/**
 * The relay under an ownership that changes (issue #11 item 4), on SQLite with an ownership the test
 * drives: it publishes nothing of a partition whose fence is gone — with or without a `lost` event —
 * and when the partition is its own again it reads the table before taking rows from memory, so every
 * aggregate's versions reach the stream once each and in order.
 */
import { describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { createLogger } from "../../src/log/index.js";
import { OutboxRelay } from "../../src/outbox/index.js";
import { GroupCommitWriter, Repository, type Database } from "../../src/persistence/index.js";
import type { Ownership } from "../../src/cluster/index.js";
import { profileWrite } from "../support/index.js";
import { ManualOwnership, byAggregate, idsWhere, nextEventId, streamed, until, useRelayHarness, versions } from "./support.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
let db: Database;
useRelayHarness((h) => ({ nc, jsm, db } = h));

/** A writer and a started relay under `ownership`, wired as Nerve wires them. */
function wired(ownership: Ownership): { writer: GroupCommitWriter; relay: OutboxRelay } {
  const writer = new GroupCommitWriter(db);
  const relay = new OutboxRelay({ repo: new Repository(db), js: jetstream(nc), jsm, logger: createLogger("silent"), window: 8, deleter: writer, ownership });
  writer.on("committed", (rows) => relay.offer(rows));
  relay.start();
  return { writer, relay };
}

const commit = (writer: GroupCommitWriter, ids: string[], v: number) => Promise.all(ids.map((id) => writer.submit(profileWrite(id, v, nextEventId("0190a0b3")))));
const stored = async (prefix: string) => byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((s) => s.startsWith(prefix)));

describe("OutboxRelay under a changing ownership", () => {
  it("publishes nothing of a partition whose fence is gone without an event; once it is back, reads the table first", async () => {
    const own = new ManualOwnership();
    const { writer, relay } = wired(own);
    const P = 5;
    const mine = idsWhere("fz", 6, (p) => p === P);
    const others = idsWhere("fo", 6, (p) => p !== P);
    for (let v = 1; v <= 2; v++) await commit(writer, [...mine, ...others], v);
    expect(await relay.flush(5000)).toBe(true);

    // A hand-off begins (or the lease lapses by this process's clock): the fence goes, no event yet.
    own.pause(P, true);
    for (let v = 3; v <= 4; v++) await commit(writer, [...mine, ...others], v);
    await until("the others are published", async () => (await new Repository(db).outboxSize()) === mine.length * 2, 5000);
    expect(relay.stats.dropped).toBeGreaterThan(0);
    const during = await stored("fz");
    for (const id of mine) expect(during.get(id), id).toEqual([1, 2]);

    // The hand-off failed: the partition is held again, and its new commits wait behind the old ones.
    own.pause(P, false);
    await commit(writer, [...mine, ...others], 5);
    expect(await relay.flush(5000)).toBe(true);
    await commit(writer, [...mine, ...others], 6);
    expect(await relay.flush(5000)).toBe(true);
    await relay.stop();
    const after = await stored("f");
    for (const id of mine) expect(after.get(id), id).toEqual(versions(6));
    for (const id of others) expect(after.get(id), id).toEqual(versions(6));
    expect(relay.stats.duplicates).toBe(0);
  });

  it("forgets a lost partition's rows, ignores its late commits, and after acquiring it again publishes them in order from the table", async () => {
    const own = new ManualOwnership();
    const { writer, relay } = wired(own);
    const P = 9;
    const mine = idsWhere("lz", 5, (p) => p === P);
    const others = idsWhere("lo", 5, (p) => p !== P);
    await commit(writer, [...mine, ...others], 1);
    expect(await relay.flush(5000)).toBe(true);
    const scans = relay.stats.scans;

    own.lose(P);
    // Commits that raced the loss: in the table, never taken from memory.
    for (let v = 2; v <= 3; v++) await commit(writer, [...mine, ...others], v);
    await until("the others are published", async () => (await new Repository(db).outboxSize()) === mine.length * 2, 5000);
    expect((await stored("lz")).get(mine[0]!)).toEqual([1]);
    expect(relay.stats.livePasses).toBeGreaterThan(0);

    own.acquire(P);
    await commit(writer, mine, 4);
    expect(await relay.flush(5000)).toBe(true);
    await relay.stop();
    expect(relay.stats.scans).toBeGreaterThan(scans);
    const after = await stored("l");
    for (const id of mine) expect(after.get(id), id).toEqual(versions(4));
    for (const id of others) expect(after.get(id), id).toEqual(versions(3));
    expect(relay.stats.duplicates).toBe(0);
  });
});
