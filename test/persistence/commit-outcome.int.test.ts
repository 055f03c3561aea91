/**
 * A PostgreSQL commit whose answer is lost (the connection cut after COMMIT reached the server: a
 * failover, a network fault), on a real server behind a proxy that loses the answer, with the real relay
 * and nats-server: the writer asks whether it committed and answers the batch as what it was, so its
 * events are handed to the relay and reach the stream in version order. Before, it was failed as not
 * committed: the relay never heard of its rows, published the aggregate's next version first, and a later
 * read of the table dropped them as "already stored" (the stream held versions 1 and 3).
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { jetstream } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { createLogger } from "../../src/log/index.js";
import { OutboxRelay } from "../../src/outbox/index.js";
import { GroupCommitWriter, Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, profileWrite, proxiedPostgres, useNatsWithStreams, type NatsWithStreams, type TcpProxy, type TempPostgres } from "../support/index.js";
import { nextEventId, streamed } from "../outbox/support.js";

const available = await postgresAvailable();

describe.skipIf(!available)("a PostgreSQL commit whose answer was lost", () => {
  let nats: NatsWithStreams;
  useNatsWithStreams(
    (h) => (nats = h),
    (jsm) => jsm.streams.add({ name: "EVENTS_USERS", subjects: ["events.users.>"], duplicate_window: nanos(120_000_000_000) }),
  );
  let pg: TempPostgres;
  let proxy: TcpProxy;
  /** Through the proxy: what the writer and the relay use. */
  let db: Database;
  /** Straight to the server: what the test reads. */
  let direct: Database;
  beforeAll(async () => {
    let url: string;
    ({ pg, proxy, url } = await proxiedPostgres());
    direct = await openDatabase({ url: pg.url });
    db = await openDatabase({ url });
  });
  afterAll(async () => {
    await db?.close();
    await direct?.close();
    await proxy?.close();
    await pg?.drop();
  });

  /** A writer and a relay fed by it, as Nerve wires them; stopped when the test ends. */
  function wired(outcomeWaitMs?: number): { writer: GroupCommitWriter; relay: OutboxRelay } {
    const writer = new GroupCommitWriter(db, { outcomeWaitMs });
    const relay = new OutboxRelay({ repo: new Repository(db), js: jetstream(nats.nc), jsm: nats.jsm, logger: createLogger("silent"), window: 16, deleter: writer });
    writer.on("committed", (rows) => relay.offer(rows));
    writer.on("error", () => undefined);
    relay.start();
    onTestFinished(async () => {
      await proxy.restore();
      await relay.stop();
      await writer.close();
    });
    return { writer, relay };
  }

  const versionsIn = async (id: string) => (await streamed(nats.nc, nats.jsm, "EVENTS_USERS", `events.users.*.${id}`)).map((s) => Number(s.split("@")[1]));
  const storedVersions = async (id: string) =>
    (await direct.execute<{ v: number }[]>("select aggregate_version as v from nerve_events where aggregate_id = ? order by aggregate_version", [id], "all")).map((r) => Number(r.v));

  it("is answered as committed once the database says it was: its events reach the stream, in version order", async () => {
    const { writer, relay } = wired();
    await writer.submit(profileWrite("lost1", 1, nextEventId("0190a0c1")));
    // Published and its row deleted, so that the next COMMIT through the proxy is the write's.
    expect(await relay.flush(10_000)).toBe(true);
    await writer.released();
    const passed = proxy.loseAnswerTo("COMMIT");
    await writer.submit(profileWrite("lost1", 2, nextEventId("0190a0c1")));
    await passed;
    await writer.submit(profileWrite("lost1", 3, nextEventId("0190a0c1")));
    expect(await relay.flush(10_000)).toBe(true);
    expect(await storedVersions("lost1")).toEqual([1, 2, 3]);
    expect(await versionsIn("lost1")).toEqual([1, 2, 3]);
  });

  it("fails the write while the database cannot say, holds every later write back until it can, and then hands the committed rows on first", async () => {
    const { writer, relay } = wired(300);
    await writer.submit(profileWrite("doubt1", 1, nextEventId("0190a0c2")));
    expect(await relay.flush(10_000)).toBe(true);
    await writer.released();
    const passed = proxy.loseAnswerTo("COMMIT", 60_000);
    const second = writer.submit(profileWrite("doubt1", 2, nextEventId("0190a0c2"))).then(
      () => "committed",
      (err: unknown) => err,
    );
    await passed;
    // The COMMIT is on its way to the server; then the database goes out of reach for longer than the writer asks.
    await new Promise((r) => setTimeout(r, 100));
    await proxy.cut();
    const refused = await second;
    expect(refused).not.toBe("committed");
    // It did commit.
    expect(await storedVersions("doubt1")).toEqual([1, 2]);
    // Another aggregate's write is refused while the outcome is unknown: committed, its rows would overtake.
    const other = await writer.submit(profileWrite("doubt2", 1, nextEventId("0190a0c2"))).then(
      () => "committed",
      (err: unknown) => err,
    );
    // Refused writes count as settled: a partition's drain (settled()) does not wait for them for ever.
    await writer.settled();
    await proxy.restore();
    // The next write learns the outcome first: version 2's rows go to the relay before version 3's.
    await writer.submit(profileWrite("doubt1", 3, nextEventId("0190a0c2")));
    expect(await relay.flush(10_000)).toBe(true);
    expect(await storedVersions("doubt1")).toEqual([1, 2, 3]);
    expect(await versionsIn("doubt1")).toEqual([1, 2, 3]);
    // Both were told the outcome is unknown (a retry can help), not that they failed.
    expect(refused).toMatchObject({ name: "CommitOutcomeUnknown" });
    expect(other).toMatchObject({ name: "CommitOutcomeUnknown" });
  });
});
