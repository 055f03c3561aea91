/**
 * The relay's verification pass (publishBatch with verifyAll) looks the stream up a few aggregates at a
 * time, and starts no lookup of a stream once one of it failed: after a failure a pass may hold a thousand
 * aggregates, and a burst of as many requests would land on JetStream's API while it recovers; the other
 * streams' rows go on. The stream here is a stand-in that counts lookups (the integration tests,
 * relay.int and relay-isolation.int, run the pass against a real one).
 */
import { describe, expect, it } from "vitest";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { VERIFY_AT_ONCE, publishBatch, type BatchContext } from "../../src/outbox/publish-batch.js";
import type { OutboxRow } from "../../src/persistence/index.js";

const row = (i: number, type = "User", version = 1): OutboxRow => {
  const context = type === "User" ? "users" : "orders";
  return {
    seq: i + 1,
    event_id: `0190a0b0-0000-7000-8000-${String(i).padStart(12, "0")}`,
    aggregate_type: type,
    aggregate_id: `${type === "User" ? "u" : "o"}${i}`,
    aggregate_version: version,
    subject: `events.${context}.Something.${type === "User" ? "u" : "o"}${i}`,
    event_type: "Something",
    event_version: 1,
    body: Buffer.from([0x80]),
    partition_no: 0,
    traceparent: null,
    tracestate: null,
  };
};

/**
 * A batch context over stand-ins of the stream: `lookup` answers each lookup (by its number), `publish`
 * each publish. A failure holds back the row's aggregate type, as the relay does for a stream that failed
 * (publish failures of rows in `refused` hold back their aggregate only, as for a refused row).
 */
function context(lookup: (n: number, subject: string) => Promise<null>, publish: (r: OutboxRow) => Promise<void> = async () => undefined) {
  let inFlight = 0;
  let most = 0;
  let lookups = 0;
  const published: OutboxRow[] = [];
  const heldTypes = new Set<string>();
  const heldAggregates = new Set<string>();
  const failures: Array<{ id: string; stage: string }> = [];
  let skipped = 0;
  const jsm = {
    streams: {
      getMessage: async (_stream: string, q: { last_by_subj: string }) => {
        const n = ++lookups;
        most = Math.max(most, ++inFlight);
        try {
          return await lookup(n, q.last_by_subj);
        } finally {
          inFlight--;
        }
      },
    },
  } as unknown as JetStreamManager;
  const js = {
    publish: async (subject: string) => {
      const r = rows.find((x) => x.subject === subject)!;
      await publish(r);
      published.push(r);
      return { duplicate: false };
    },
  } as unknown as JetStreamClient;
  let rows: OutboxRow[] = [];
  const ctx: BatchContext = {
    js,
    jsm,
    window: 64,
    mayPublish: () => true,
    verifying: () => false,
    mustVerify: () => false,
    holds: (r) => heldTypes.has(r.aggregate_type) || heldAggregates.has(r.aggregate_id),
    failed: (r, err, stage) => {
      failures.push({ id: r.aggregate_id, stage });
      if ((err as Error).message === "refused") heldAggregates.add(r.aggregate_id);
      else heldTypes.add(r.aggregate_type);
    },
    skipped: (n) => void (skipped += n),
    checked: () => undefined,
    dropped: () => undefined,
    sent: () => undefined,
    stored: () => undefined,
    missing: () => undefined,
    settled: () => undefined,
  };
  return {
    ctx,
    run: (batch: OutboxRow[], verifyAll: boolean) => {
      rows = batch;
      return publishBatch(batch, ctx, verifyAll);
    },
    most: () => most,
    lookups: () => lookups,
    published,
    failures,
    skipped: () => skipped,
  };
}

describe("the relay's verification pass", () => {
  it(`looks up at most ${VERIFY_AT_ONCE} aggregates at once, every one of them, then publishes what the stream lacks`, async () => {
    const c = context(() => new Promise((r) => setTimeout(() => r(null), 1)));
    const { acked, failures } = await c.run(Array.from({ length: 500 }, (_, i) => row(i)), true);
    expect(failures).toBe(0);
    // Each aggregate by its literal subjects: the users context's three event types and its row's own.
    expect(c.lookups()).toBe(500 * 4);
    expect(c.most()).toBe(VERIFY_AT_ONCE);
    expect(c.published).toHaveLength(500);
    expect(acked).toHaveLength(500);
  });

  it("starts no lookup of a stream once one of it failed and publishes none of its rows, while the other stream's go out (was: the whole pass failed)", async () => {
    const c = context((_n, subject) => new Promise((resolve, reject) => setTimeout(() => (subject.endsWith(".u78") ? reject(new Error("jetstream is not enabled")) : resolve(null)), 1)));
    // Users and orders interleaved: 500 of each.
    const batch = Array.from({ length: 1000 }, (_, i) => row(i, i % 2 === 0 ? "User" : "Order"));
    const { acked, failures } = await c.run(batch, true);
    expect(failures).toBe(1);
    expect(c.failures).toEqual([{ id: "u78", stage: "lookup" }]);
    // u78's (the 40th user's) failed while at most VERIFY_AT_ONCE - 1 others were on their way; no user's started after it.
    // Literal subjects: four an aggregate for users (three event types and its rows' own), five for orders.
    const userLookups = c.lookups() - 500 * 5;
    expect(userLookups).toBeLessThan((40 + VERIFY_AT_ONCE) * 4);
    expect(c.published.every((r) => r.aggregate_type === "Order")).toBe(true);
    expect(c.published).toHaveLength(500);
    expect(acked).toHaveLength(500);
    expect(c.skipped()).toBe(500);
  });

  it("holds back a refused row's aggregate alone: its later rows stay, every other aggregate's go out", async () => {
    const c = context(async () => null, async (r) => {
      if (r.aggregate_id === "u3" && Number(r.aggregate_version) === 1) throw new Error("refused");
    });
    const batch = [row(1), row(2), row(3, "User", 1), { ...row(3, "User", 2), seq: 10, subject: "events.users.Other.u3", event_id: "0190a0b0-0000-7000-8000-00000000000a" }, row(4)];
    const { acked, failures } = await c.run(batch, false);
    expect(failures).toBe(1);
    expect(c.published.map((r) => r.aggregate_id).sort()).toEqual(["u1", "u2", "u4"]);
    expect(acked).toHaveLength(3);
    expect(c.skipped()).toBe(1);
  });

  it("takes a publish the client throws at while it is made as that row's failure alone (a refusal), and goes on", async () => {
    const c = context(async () => null);
    const seen: Array<{ id: string; err: string }> = [];
    const ctx = {
      ...c.ctx,
      js: {
        publish: (subject: string) => {
          if (subject.endsWith(".u2")) throw new Error("invalid header value");
          return Promise.resolve({ duplicate: false });
        },
      } as unknown as JetStreamClient,
      failed: (r: OutboxRow, err: unknown) => void seen.push({ id: r.aggregate_id, err: (err as Error).name }),
    };
    const { acked, failures } = await publishBatch([row(1), row(2), row(3)], ctx, false);
    expect(failures).toBe(1);
    expect(seen).toEqual([{ id: "u2", err: "UnsendableRowError" }]);
    expect(acked).toEqual([2, 4]);
  });
});
