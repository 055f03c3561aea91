/**
 * The relay's holds: which failure holds back what, for how long, and when it is over. The relay's
 * behaviour with them runs against a real nats-server in relay-isolation.int.
 */
import { describe, expect, it, vi } from "vitest";
import { Holds, REFUSED_RETRY_MS, STREAM_RETRY_MS, refusesRow } from "../../src/outbox/holds.js";
import type { OutboxRow } from "../../src/persistence/index.js";
import { captureLog } from "../support/index.js";

const row = (type: "User" | "Order", id: string, seq: number): OutboxRow => ({
  seq,
  event_id: `0190a0b0-0000-7000-8000-${String(seq).padStart(12, "0")}`,
  aggregate_type: type,
  aggregate_id: id,
  aggregate_version: 1,
  subject: `events.${type === "User" ? "users" : "orders"}.Something.${id}`,
  event_type: "Something",
  event_version: 1,
  body: Buffer.from([0x80]),
  partition_no: 3,
  traceparent: null,
  tracestate: null,
});

/** An error as nats.js makes it. */
const jsError = (name: string, message: string, code?: number) => Object.assign(new Error(message), { name, code });
const tooLarge = jsError("JetStreamApiError", "message size exceeds maximum allowed", 10054);

describe("refusesRow", () => {
  it("is a refusal of this message: the stream's API error for it, or the client's max_payload", () => {
    expect(refusesRow(tooLarge)).toBe(true);
    expect(refusesRow(jsError("InvalidArgumentError", "'payload' max_payload size exceeded"))).toBe(true);
  });

  it("is not an unavailable stream: no responders, a timeout, a leader election, a stream refusing every message, a cut connection", () => {
    expect(refusesRow(jsError("JetStreamNotEnabled", "jetstream is not enabled"))).toBe(false);
    expect(refusesRow(jsError("TimeoutError", "timeout"))).toBe(false);
    expect(refusesRow(jsError("JetStreamApiError", "JetStream system temporarily unavailable", 10008))).toBe(false);
    expect(refusesRow(jsError("JetStreamApiError", "maximum messages exceeded", 10077))).toBe(false);
    expect(refusesRow(jsError("ClosedConnectionError", "closed connection"))).toBe(false);
    expect(refusesRow("what")).toBe(false);
  });
});

describe("Holds", () => {
  it("holds back the aggregate of a refused row, and nothing else, with a back-off that doubles; a retry that publishes ends it", () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    try {
      const log = captureLog("info");
      const h = new Holds(log.logger);
      const a1 = row("User", "a", 10);
      h.failed(a1, 3, tooLarge, "publish");
      expect(h.stuck).toBe(1);
      expect(h.waits(row("User", "a", 11))).toBe(true);
      expect(h.waits(row("User", "b", 12))).toBe(false);
      expect(h.unsure(a1)).toBe(true);
      expect(log.lines.at(-1)).toMatchObject({ event_id: a1.event_id, subject: a1.subject, aggregate_id: "a", code: 10054, rows_held_back: 3, retry_in_ms: REFUSED_RETRY_MS.first });

      expect(h.dueAggregates(performance.now())).toEqual([]);
      vi.advanceTimersByTime(REFUSED_RETRY_MS.first);
      expect(h.dueAggregates(performance.now())).toEqual([{ partition: 3, first: 10 }]);
      // Being retried: its rows may go out (read again from seq 10).
      expect(h.waits(a1)).toBe(false);
      h.failed(a1, 3, tooLarge, "publish");
      expect(h.nextRetryIn(performance.now())).toBe(REFUSED_RETRY_MS.first * 2);
      vi.advanceTimersByTime(REFUSED_RETRY_MS.first * 2);
      expect(h.dueAggregates(performance.now())).toHaveLength(1);
      h.looked(a1);
      h.published(a1);
      expect(h.stuck).toBe(0);
      expect(h.any).toBe(false);
      expect(h.unsure(a1)).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it("holds back a stream that fails once per burst, each of its aggregates to be looked up; a read through the table after a probe that answered ends it", () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    try {
      const h = new Holds(captureLog("warn").logger);
      const gone = jsError("StreamNotFoundError", "stream not found", 10059);
      h.failed(row("User", "a", 20), 1, gone, "lookup");
      h.failed(row("User", "b", 15), 1, gone, "lookup");
      expect(h.stuck).toBe(0);
      expect(h.waits(row("User", "c", 30))).toBe(true);
      expect(h.waits(row("Order", "o", 31))).toBe(false);
      expect(h.unsure(row("User", "b", 15))).toBe(true);
      // One hold for the burst: its back-off is the first, its first held seq the lowest.
      expect(h.nextRetryIn(performance.now())).toBe(STREAM_RETRY_MS.first);
      vi.advanceTimersByTime(STREAM_RETRY_MS.first);
      expect(h.dueStreams(performance.now())).toEqual(["EVENTS_USERS"]);
      h.probeFailed("EVENTS_USERS", gone);
      expect(h.dueStreams(performance.now())).toEqual([]);
      vi.advanceTimersByTime(STREAM_RETRY_MS.first * 2);
      expect(h.retryStream("EVENTS_USERS")).toBe(15);
      expect(h.waits(row("User", "c", 30))).toBe(false);
      h.readThrough();
      expect(h.any).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it("keeps a stream held back when another of its publishes of the same batch succeeds: the failed one's rows are read again only by the retry", () => {
    const h = new Holds(captureLog("warn").logger);
    h.failed(row("Order", "o1", 5), 2, jsError("TimeoutError", "timeout"), "publish");
    h.published(row("Order", "o2", 4));
    expect(h.waits(row("Order", "o3", 9))).toBe(true);
  });

  it("forgets the aggregates of a partition no longer held", () => {
    const h = new Holds(captureLog("warn").logger);
    h.failed(row("User", "a", 10), 1, tooLarge, "publish");
    h.forget(3);
    expect(h.stuck).toBe(0);
    expect(h.unsure(row("User", "a", 10))).toBe(false);
  });
});
