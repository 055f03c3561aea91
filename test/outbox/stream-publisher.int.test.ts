/**
 * The relay's JetStream publisher against a real nats-server: acks on one subscription, duplicates by
 * Nats-Msg-Id, the event headers as consumers read them, and every way a publish fails — no stream,
 * a JetStream error, no answer, a closed publisher.
 */
import { describe, expect, it } from "vitest";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";
import { ContentTypes, Headers } from "../../contracts/index.js";
import { eventHeaderBytes, StreamPublisher, StreamPublishError } from "../../src/outbox/index.js";
import { useNatsWithStreams } from "../support/index.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
useNatsWithStreams(
  (h) => ({ nc, jsm } = h),
  async (jsm) => {
    await jsm.streams.add({ name: "PUB_TEST", subjects: ["pubtest.>"], duplicate_window: nanos(60_000) });
    await jsm.streams.add({ name: "PUB_SMALL", subjects: ["pubsmall.>"], max_msgs_per_subject: 1, discard: "new" as never, discard_new_per_subject: true });
  },
);

const body = new Uint8Array([0x81, 0xa1, 0x61, 0x01]);
const eventHeaders = (eventId: string, traceparent?: string, tracestate?: string) =>
  eventHeaderBytes(eventId, { contentType: ContentTypes.MsgPack, eventType: "UserProfileUpdated", eventVersion: 1, traceparent, tracestate });

describe("StreamPublisher", () => {
  it("resolves with the stream's ack, a repeated Nats-Msg-Id as a duplicate, and many publishes in flight each with its own ack", async () => {
    const p = new StreamPublisher(nc, 5000);
    const first = await p.publish("pubtest.a", body, eventHeaders("0190a0f0-0000-7000-8000-000000000001"));
    expect(first).toEqual({ stream: "PUB_TEST", seq: 1, duplicate: false });
    expect(await p.publish("pubtest.a", body, eventHeaders("0190a0f0-0000-7000-8000-000000000001"))).toEqual({ stream: "PUB_TEST", seq: 1, duplicate: true });
    // More than the ring's first 256 slots at once: it grows, and every ack finds its publish.
    const acks = await Promise.all(Array.from({ length: 600 }, (_, i) => p.publish(`pubtest.m${i}`, body, eventHeaders(`0190a0f0-0000-7000-8000-1${String(i).padStart(11, "0")}`))));
    expect(acks.map((a) => a.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 600 }, (_, i) => i + 2));
    expect(p.inflight).toBe(0);
    p.close();
  });

  it("writes the event headers consumers read, and drops a trace context with a line break rather than the event", async () => {
    const p = new StreamPublisher(nc, 5000);
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    await p.publish("pubtest.h1", body, eventHeaders("0190a0f0-0000-7000-8000-000000000101", traceparent, "vendor=x"));
    await p.publish("pubtest.h2", body, eventHeaders("0190a0f0-0000-7000-8000-000000000102", `${traceparent}\r\nEvent-Type: Forged`, "a=b"));
    const one = await jsm.streams.getMessage("PUB_TEST", { last_by_subj: "pubtest.h1" });
    expect(one?.header.get(Headers.MsgId)).toBe("0190a0f0-0000-7000-8000-000000000101");
    expect(one?.header.get(Headers.ContentType)).toBe(ContentTypes.MsgPack);
    expect(one?.header.get(Headers.EventType)).toBe("UserProfileUpdated");
    expect(one?.header.get(Headers.EventVersion)).toBe("1");
    expect(one?.header.get(Headers.TraceParent)).toBe(traceparent);
    expect(one?.header.get(Headers.TraceState)).toBe("vendor=x");
    expect([...(one?.data ?? [])]).toEqual([...body]);
    const two = await jsm.streams.getMessage("PUB_TEST", { last_by_subj: "pubtest.h2" });
    expect(two?.header.get(Headers.EventType)).toBe("UserProfileUpdated");
    expect(two?.header.get(Headers.TraceParent)).toBe("");
    expect(two?.header.get(Headers.TraceState)).toBe("");
    // An event id with a line break is refused before anything is sent.
    expect(() => eventHeaders("0190a0f0\r\nX: y")).toThrow(StreamPublishError);
    p.close();
  });

  it("fails a publish with no stream for its subject (no responders), one the stream refuses, one nobody answers, and those in flight at close", async () => {
    const p = new StreamPublisher(nc, 400);
    await expect(p.publish("nostream.x", body, eventHeaders("0190a0f0-0000-7000-8000-000000000201"))).rejects.toMatchObject({ name: "StreamPublishError", code: 503 });
    await p.publish("pubsmall.x", body, eventHeaders("0190a0f0-0000-7000-8000-000000000202"));
    const refused = await p.publish("pubsmall.x", body, eventHeaders("0190a0f0-0000-7000-8000-000000000203")).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StreamPublishError);
    expect((refused as StreamPublishError).code).toBeGreaterThan(0);
    // A subscriber that never answers stands in for a stream whose ack is lost.
    const silent = nc.subscribe("silent.>");
    const started = performance.now();
    await expect(p.publish("silent.x", body, eventHeaders("0190a0f0-0000-7000-8000-000000000204"))).rejects.toThrow(/no ack within 400 ms/);
    expect(performance.now() - started).toBeLessThan(2000);
    const pending = p.publish("silent.y", body, eventHeaders("0190a0f0-0000-7000-8000-000000000205"));
    p.close();
    await expect(pending).rejects.toThrow(/closed/);
    await expect(p.publish("pubtest.z", body, eventHeaders("0190a0f0-0000-7000-8000-000000000206"))).rejects.toThrow(/closed/);
    expect(p.inflight).toBe(0);
    silent.unsubscribe();
  });
});
