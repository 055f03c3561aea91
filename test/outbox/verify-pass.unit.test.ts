/**
 * The relay's verification pass (publishBatch with heads to look up) asks the stream a few aggregates at
 * a time, and a failure holds back only what it concerns: once a lookup of a stream failed, none more of
 * that stream starts and its aggregates keep their rows, while the other streams' aggregates are looked up
 * and published. The stream here is a stand-in that counts lookups, and the context a stand-in for the
 * relay's holds (the integration tests, relay.int and relay-isolation.int, run against a real one).
 */
import { describe, expect, it } from "vitest";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { VERIFY_AT_ONCE, publishBatch, type BatchContext } from "../../src/outbox/publish-batch.js";
import type { OutboxRow } from "../../src/persistence/index.js";

const Streams = { User: "EVENTS_USERS", Order: "EVENTS_ORDERS" } as const;

/** Row `i`: version 1 of aggregate `u<i>` (a User, to EVENTS_USERS) or `o<i>` (an Order, to EVENTS_ORDERS). */
const row = (i: number, type: keyof typeof Streams = "User"): OutboxRow => {
  const id = `${type === "User" ? "u" : "o"}${i}`;
  return {
    seq: i + 1,
    event_id: `0190a0b0-0000-7000-8000-${String(i).padStart(12, "0")}`,
    aggregate_type: type,
    aggregate_id: id,
    aggregate_version: 1,
    subject: `events.${type === "User" ? "users" : "orders"}.Something.${id}`,
    event_type: "Something",
    event_version: 1,
    body: Buffer.from([0x80]),
    partition_no: 0,
    traceparent: null,
    tracestate: null,
  };
};

/** A context whose lookups of `stream` run through `lookup`, and which holds a stream back after its first failure, as the relay does. */
function context(lookup: (stream: string, n: number) => Promise<null>, publish: (r: string) => Promise<void> = async () => undefined) {
  let inFlight = 0;
  let most = 0;
  const lookups = new Map<string, number>();
  const published: string[] = [];
  const kept: { ids: string[]; stage?: string }[] = [];
  const failedStreams = new Set<string>();
  const jsm = {
    streams: {
      getMessage: async (stream: string) => {
        const n = (lookups.get(stream) ?? 0) + 1;
        lookups.set(stream, n);
        most = Math.max(most, ++inFlight);
        try {
          return await lookup(stream, n);
        } finally {
          inFlight--;
        }
      },
    },
  } as unknown as JetStreamManager;
  const js = {
    publish: async (subject: string) => {
      await publish(subject);
      published.push(subject.split(".").at(-1)!);
      return { duplicate: false };
    },
  } as unknown as JetStreamClient;
  const streamOf = (r: OutboxRow) => Streams[r.aggregate_type as keyof typeof Streams];
  const ctx: BatchContext = {
    js,
    jsm,
    window: 64,
    mayPublish: () => true,
    waits: (r) => failedStreams.has(streamOf(r)),
    verifying: () => true,
    mustVerify: () => true,
    looked: () => undefined,
    dropped: () => undefined,
    kept: (rows, failure) => {
      kept.push({ ids: rows.map((r) => r.aggregate_id), stage: failure?.stage });
      if (failure) failedStreams.add(streamOf(rows[0]!));
    },
    sent: () => undefined,
    stored: () => undefined,
    missing: () => undefined,
    settled: () => undefined,
  };
  return { ctx, most: () => most, lookups: (s: string) => lookups.get(s) ?? 0, published, kept };
}

describe("the relay's verification pass", () => {
  it(`looks up at most ${VERIFY_AT_ONCE} aggregates at once, every one of them, then publishes what the stream lacks`, async () => {
    const c = context(() => new Promise((r) => setTimeout(() => r(null), 1)));
    const { acked } = await publishBatch(Array.from({ length: 500 }, (_, i) => row(i)), c.ctx);
    expect(c.lookups("EVENTS_USERS")).toBe(500);
    expect(c.most()).toBe(VERIFY_AT_ONCE);
    expect(c.published).toHaveLength(500);
    expect(acked).toHaveLength(500);
    expect(c.kept).toEqual([]);
  });

  it("starts no lookup of a stream once one of it failed and keeps that stream's rows, while the other stream's aggregates are looked up and published", async () => {
    const c = context((stream, n) => new Promise((resolve, reject) => setTimeout(() => (stream === "EVENTS_USERS" && n === 40 ? reject(new Error("stream not found")) : resolve(null)), 1)));
    const rows = Array.from({ length: 1000 }, (_, i) => row(i, i % 2 === 0 ? "User" : "Order"));
    const { acked } = await publishBatch(rows, c.ctx);
    // The 40th users lookup failed while at most VERIFY_AT_ONCE - 1 others were on their way.
    expect(c.lookups("EVENTS_USERS")).toBeLessThan(40 + VERIFY_AT_ONCE);
    expect(c.lookups("EVENTS_ORDERS")).toBe(500);
    // Every order is published; no user is (its stream failed: those looked up before wait too).
    expect(c.published.filter((id) => id.startsWith("o"))).toHaveLength(500);
    expect(c.published.filter((id) => id.startsWith("u"))).toEqual([]);
    expect(acked).toHaveLength(500);
    expect(c.kept.filter((k) => k.stage === "lookup")).toHaveLength(1);
    expect(c.kept.flatMap((k) => k.ids).sort()).toEqual(rows.filter((r) => r.aggregate_type === "User").map((r) => r.aggregate_id).sort());
  });

  it("stops only the aggregate whose publish failed, its later rows behind it; the other aggregates' publishes go on", async () => {
    const c = context(
      async () => null,
      async (subject) => {
        if (subject.endsWith(".u3")) throw Object.assign(new Error("message size exceeds maximum allowed"), { name: "JetStreamApiError", code: 10054 });
      },
    );
    c.ctx.waits = () => false;
    // u0..u9 with versions 1 and 2 (rows 0-9, then 10-19 as version 2 of the same aggregates).
    const rows = [...Array.from({ length: 10 }, (_, i) => row(i)), ...Array.from({ length: 10 }, (_, i) => ({ ...row(i + 10), aggregate_id: `u${i}`, aggregate_version: 2, subject: `events.users.Something.u${i}` }))];
    const { acked } = await publishBatch(rows, c.ctx);
    expect(c.kept).toEqual([{ ids: ["u3", "u3"], stage: "publish" }]);
    expect(acked).toHaveLength(18);
    for (let i = 0; i < 10; i++) if (i !== 3) expect(c.published.filter((id) => id === `u${i}`)).toHaveLength(2);
  });
});
