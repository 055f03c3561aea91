/** When a consumer taken over may be pulled (stranded.ts): given what its durables have out, when asked, then how long to wait. */
import { describe, expect, it } from "vitest";
import { MAX_RETURNED, clearIn, nakSubjects, serverTime, type DurableOut } from "../../src/consumers/stranded.js";

const T = Date.parse("2026-12-06T11:00:00Z");
const out = (o: Partial<DurableOut>): DurableOut => ({ ackPending: 0, waiting: 0, ackWaitMs: 30_000, ...o });

describe("clearIn", () => {
  it("is 0 when nothing is out and nobody waits, whatever the clock", () => {
    expect(clearIn([], undefined)).toBe(0);
    expect(clearIn([out({}), out({ lastDelivered: T })], undefined)).toBe(0);
  });

  it("is not known while a pull request waits at the server, even with nothing out", () => {
    expect(clearIn([out({ waiting: 1 })], T)).toBeUndefined();
    expect(clearIn([out({}), out({ waiting: 2, ackPending: 1, lastDelivered: T - 60_000 })], T)).toBeUndefined();
  });

  it("is not known with deliveries out and no server time, or no delivery time", () => {
    expect(clearIn([out({ ackPending: 3, lastDelivered: T })], undefined)).toBeUndefined();
    expect(clearIn([out({ ackPending: 3 })], T)).toBeUndefined();
  });

  it("waits until the last delivery plus ack_wait plus the margin, by the server's clock", () => {
    expect(clearIn([out({ ackPending: 3, lastDelivered: T - 10_000 })], T, 1000)).toBe(21_000);
    expect(clearIn([out({ ackPending: 3, lastDelivered: T - 10_000, ackWaitMs: 5000 })], T, 1000)).toBe(0);
    expect(clearIn([out({ ackPending: 1, lastDelivered: T - 29_500 })], T, 1000)).toBe(1500);
  });

  it("takes the longest wait of the durables", () => {
    expect(clearIn([out({ ackPending: 1, lastDelivered: T - 25_000 }), out({}), out({ ackPending: 2, lastDelivered: T - 5_000 })], T, 0)).toBe(25_000);
  });
});

describe("serverTime", () => {
  it("reads the server's RFC 3339 times, nanoseconds and all", () => {
    expect(serverTime("2026-12-06T11:00:00.123456789Z")).toBe(T + 123);
    expect(serverTime("2026-12-06T11:00:00Z")).toBe(T);
  });

  it("gives nothing for what is not a time", () => {
    expect(serverTime(undefined)).toBeUndefined();
    expect(serverTime(123)).toBeUndefined();
    expect(serverTime("0001-01-01T00:00:00Z")).toBeUndefined();
    expect(serverTime("soon")).toBeUndefined();
  });
});

describe("nakSubjects", () => {
  it("names every stream sequence above the floor up to the last delivery, in order, with the next delivery's sequence", () => {
    // The next one's, not the last one's: a redelivery acknowledged last puts the floor's delivery sequence
    // on the last one, and the server ignores a NAK at or below it (review).
    expect(nakSubjects("EVENTS_ACCESS", "learner-progress", out({ ackPending: 2, floor: 40, delivered: { stream: 43, consumer: 17 } }))).toEqual([
      "$JS.ACK.EVENTS_ACCESS.learner-progress.1.41.18.0.0",
      "$JS.ACK.EVENTS_ACCESS.learner-progress.1.42.18.0.0",
      "$JS.ACK.EVENTS_ACCESS.learner-progress.1.43.18.0.0",
    ]);
  });

  it("names nothing when nothing is out, the positions are unknown, or there are too many", () => {
    expect(nakSubjects("S", "c", out({ ackPending: 0, floor: 1, delivered: { stream: 5, consumer: 5 } }))).toBeUndefined();
    expect(nakSubjects("S", "c", out({ ackPending: 1 }))).toBeUndefined();
    expect(nakSubjects("S", "c", out({ ackPending: 1, floor: 5, delivered: { stream: 5, consumer: 5 } }))).toBeUndefined();
    expect(nakSubjects("S", "c", out({ ackPending: 1, floor: 0, delivered: { stream: MAX_RETURNED + 1, consumer: 9 } }))).toBeUndefined();
    expect(nakSubjects("S", "c", out({ ackPending: 1, floor: 0, delivered: { stream: MAX_RETURNED, consumer: 9 } }))).toHaveLength(MAX_RETURNED);
    expect(nakSubjects("S", "c", out({ ackPending: 1, floor: 0, delivered: { stream: 3, consumer: 3 } }), 0)).toBeUndefined();
  });
});
