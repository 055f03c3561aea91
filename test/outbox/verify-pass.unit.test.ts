/**
 * The relay's verification pass (publishBatch with verifyAll) looks the stream up a few aggregates at a
 * time, and starts no lookup once one failed: after a failure a pass may hold a thousand aggregates, and
 * a burst of as many requests would land on JetStream's API while it recovers. The stream here is a
 * stand-in that counts lookups (the integration tests, relay.int, run the pass against a real one).
 */
import { describe, expect, it } from "vitest";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { VERIFY_AT_ONCE, publishBatch, type BatchContext } from "../../src/outbox/publish-batch.js";
import type { OutboxRow } from "../../src/persistence/index.js";

const row = (i: number): OutboxRow => ({
  seq: i + 1,
  event_id: `0190a0b0-0000-7000-8000-${String(i).padStart(12, "0")}`,
  aggregate_type: "User",
  aggregate_id: `u${i}`,
  aggregate_version: 1,
  subject: `events.users.UserProfileUpdated.u${i}`,
  event_type: "UserProfileUpdated",
  event_version: 1,
  body: Buffer.from([0x80]),
  partition_no: 0,
  traceparent: null,
  tracestate: null,
});

function context(lookup: (n: number) => Promise<null>): { ctx: BatchContext; most: () => number; lookups: () => number; published: () => number } {
  let inFlight = 0;
  let most = 0;
  let lookups = 0;
  let published = 0;
  const jsm = {
    streams: {
      getMessage: async () => {
        const n = ++lookups;
        most = Math.max(most, ++inFlight);
        try {
          return await lookup(n);
        } finally {
          inFlight--;
        }
      },
    },
  } as unknown as JetStreamManager;
  const js = { publish: async () => (published++, { duplicate: false }) } as unknown as JetStreamClient;
  const ctx: BatchContext = {
    js,
    jsm,
    window: 64,
    mayPublish: () => true,
    verifying: () => false,
    mustVerify: () => false,
    dropped: () => undefined,
    sent: () => undefined,
    stored: () => undefined,
    missing: () => undefined,
    settled: () => undefined,
  };
  return { ctx, most: () => most, lookups: () => lookups, published: () => published };
}

describe("the relay's verification pass", () => {
  it(`looks up at most ${VERIFY_AT_ONCE} aggregates at once, every one of them, then publishes what the stream lacks`, async () => {
    const c = context(() => new Promise((r) => setTimeout(() => r(null), 1)));
    const { acked, failed } = await publishBatch(Array.from({ length: 500 }, (_, i) => row(i)), c.ctx, true);
    expect(failed).toBeUndefined();
    expect(c.lookups()).toBe(500);
    expect(c.most()).toBe(VERIFY_AT_ONCE);
    expect(c.published()).toBe(500);
    expect(acked).toHaveLength(500);
  });

  it("starts no lookup once one failed, and publishes nothing", async () => {
    const c = context((n) => new Promise((resolve, reject) => setTimeout(() => (n === 40 ? reject(new Error("jetstream is not enabled")) : resolve(null)), 1)));
    const { failed } = await publishBatch(Array.from({ length: 1000 }, (_, i) => row(i)), c.ctx, true);
    expect(String(failed)).toContain("jetstream is not enabled");
    // The 40th failed while at most VERIFY_AT_ONCE - 1 others were on their way.
    expect(c.lookups()).toBeLessThan(40 + VERIFY_AT_ONCE);
    expect(c.published()).toBe(0);
  });
});
