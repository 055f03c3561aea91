/**
 * The live relay's look for rows it was never handed, with the SQLite write worker (the default on more than two cores): the
 * worker commits and the main thread hears of it (committed → offer) only after a message hop, so the
 * relay's look at the table can meet rows that are committed and on their way to it. Those are not
 * late; a row that really was never handed over still is.
 */
import { describe, expect, it, onTestFinished } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { OutboxRelay } from "../../src/outbox/index.js";
import { GroupCommitWriter, Repository, openDatabase } from "../../src/persistence/index.js";
import { captureLog, profileWrite, tempSqlitePath } from "../support/index.js";
import { byAggregate, nextEventId, streamed, useRelayHarness } from "./support.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
useRelayHarness((h) => ({ nc, jsm } = h));

/**
 * A SQLite file whose writer commits through the write worker, and a live relay fed by it that looks in
 * the table every `rescanMs`; each commit reaches the relay `hopMs` after the worker's (a main thread
 * busy for that long before it takes the worker's message).
 */
async function workerFed(rescanMs: number, hopMs = 0) {
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}` });
  const writer = new GroupCommitWriter(db, { sqliteWriter: "worker" });
  writer.on("error", () => undefined);
  const log = captureLog("warn");
  const relay = new OutboxRelay({ repo: new Repository(db), js: jetstream(nc), jsm, logger: log.logger, window: 64, deleter: writer, rescanMs, pollMs: 50 });
  writer.on("committed", (rows) => (hopMs > 0 ? setTimeout(() => relay.offer(rows), hopMs) : relay.offer(rows)));
  onTestFinished(async () => {
    await relay.stop();
    await writer.close();
    await db.close();
    await tmp.cleanup();
  });
  return { db, writer, relay, log };
}

const lateWarnings = (log: ReturnType<typeof captureLog>) => log.lines.filter((l) => String(l.msg).includes("never handed"));

describe("OutboxRelay's look for rows it was never handed (SQLite write worker)", () => {
  it("does not take rows on their way from the worker for late ones, under steady load", async () => {
    const { writer, relay, log } = await workerFed(100, 10);
    expect(writer.sqliteWorker).toBeDefined();
    relay.start();
    // Each aggregate's writes one after the other, all aggregates at once: the worker always has a commit under way.
    const ids = Array.from({ length: 100 }, (_, i) => `L${i}`);
    const until = Date.now() + 3000;
    const versions = await Promise.all(
      ids.map(async (id) => {
        let v = 0;
        while (Date.now() < until) await writer.submit(profileWrite(id, ++v, nextEventId("0190a0c0")));
        return v;
      }),
    );
    expect(await relay.flush(10_000)).toBe(true);
    expect(relay.stats.livePasses).toBeGreaterThan(0);
    expect(lateWarnings(log)).toEqual([]);
    expect(relay.stats.lateScans).toBe(0);
    const seen = byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((x) => x.startsWith("L")));
    ids.forEach((id, i) => expect(seen.get(id), id).toEqual(Array.from({ length: versions[i]! }, (_, n) => n + 1)));
  }, 30_000);

  it("still finds a row committed without being handed over, also when nothing is committed after it", async () => {
    const { db, writer, relay, log } = await workerFed(100);
    relay.start();
    await writer.submit(profileWrite("n1", 1, nextEventId("0190a0c1")));
    expect(await relay.flush(5000)).toBe(true);
    // A commit the relay never hears of (as one whose answer was lost), the last one for a while.
    const unheard = new GroupCommitWriter(db);
    await unheard.submit(profileWrite("n2", 1, nextEventId("0190a0c1")));
    expect(await relay.flush(5000)).toBe(true);
    expect(relay.stats.lateScans).toBe(1);
    expect(lateWarnings(log)).toHaveLength(1);
    const seen = byAggregate((await streamed(nc, jsm, "EVENTS_USERS", "events.users.UserProfileUpdated.>")).filter((x) => x.startsWith("n")));
    expect(seen.get("n2")).toEqual([1]);
  });
});
