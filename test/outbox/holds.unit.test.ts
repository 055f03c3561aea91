/**
 * The relay's holds (src/outbox/holds.ts): which failures hold back a row's aggregate and which its
 * stream, the back-offs (kept across retries that fail again, ended by an acknowledged publish), the
 * escalation from many refused aggregates to their stream, and what the relay's reads leave out.
 */
import { describe, expect, it } from "vitest";
import { MAX_AGGREGATE_HOLDS, ROW_RETRY_MS, RelayHolds, STREAM_RETRY_MS, jetStreamCode, outcomeUnknown, refusesRow, UnsendableRowError } from "../../src/outbox/holds.js";

/** As @nats-io/jetstream's JetStreamApiError (and its subclasses: StreamNotFoundError, …) looks. */
const apiError = (code: number, name = "JetStreamApiError"): Error => Object.assign(new Error(`api error ${code}`), { name, code, apiError: () => ({ err_code: code }) });
const row = (type: string, id: string) => ({ aggregate_type: type, aggregate_id: id });

describe("the classification of failures", () => {
  it("takes a message the stream or the client refuses for itself as the row's, anything else as the stream's", () => {
    expect(refusesRow(apiError(10054))).toBe(true); // message size exceeds maximum allowed
    expect(refusesRow(apiError(10097))).toBe(true); // header size exceeds maximum allowed
    expect(refusesRow(Object.assign(new Error("'payload' max_payload size exceeded"), { name: "InvalidArgumentError" }))).toBe(true);
    expect(refusesRow(apiError(10077))).toBe(false); // store failed: the stream refuses every message
    expect(refusesRow(apiError(10023))).toBe(false); // insufficient resources
    expect(refusesRow(apiError(10008))).toBe(false); // temporarily unavailable
    expect(refusesRow(Object.assign(new Error("jetstream is not enabled"), { name: "JetStreamNotEnabled" }))).toBe(false);
    expect(refusesRow(Object.assign(new Error("timeout"), { name: "TimeoutError" }))).toBe(false);
    expect(refusesRow("no")).toBe(false);
    // Whatever the client threw while the publish was made (a header it refuses): the row's own.
    expect(refusesRow(new UnsendableRowError("bad header"))).toBe(true);
  });

  it("knows which failures leave the outcome unknown: all but the stream's own answers and no responders", () => {
    expect(outcomeUnknown(apiError(10077))).toBe(false);
    expect(outcomeUnknown(apiError(10059, "StreamNotFoundError"))).toBe(false);
    expect(jetStreamCode(apiError(10059, "StreamNotFoundError"))).toBe(10059);
    expect(outcomeUnknown(apiError(10008))).toBe(false);
    expect(outcomeUnknown(Object.assign(new Error("timeout"), { name: "TimeoutError" }))).toBe(true);
    expect(outcomeUnknown(Object.assign(new Error("connection disconnected"), { name: "RequestError" }))).toBe(true);
    // No stream took the request: nothing stored.
    expect(outcomeUnknown(Object.assign(new Error("jetstream is not enabled"), { name: "JetStreamNotEnabled" }))).toBe(false);
  });
});

describe("RelayHolds", () => {
  it("holds a stream's type, backs off from 50 ms doubling to 2 s across failed probes and retries, and starts over after an ack", () => {
    const h = new RelayHolds();
    expect(h.holdType("User", 0)).toEqual({ fresh: true, retryInMs: STREAM_RETRY_MS.first });
    expect(h.holds(row("User", "u1"))).toBe(true);
    expect(h.holds(row("Order", "o1"))).toBe(false);
    expect(h.exclusion()).toEqual({ types: ["User"], aggregates: [] });
    expect(h.dueTypes(49)).toEqual([]);
    expect(h.dueTypes(50)).toEqual([{ type: "User", stream: "EVENTS_USERS" }]);
    // Logged at most once a minute.
    expect(h.probeFailed("User", 50)).toBeUndefined();
    expect(h.nextRetryIn(50)).toBe(100);
    h.releaseType("User");
    expect(h.holds(row("User", "u1"))).toBe(false);
    expect(h.exclusion()).toBeUndefined();
    // Failing again right after its release: the back-off goes on from where it was.
    h.holdType("User", 200);
    expect(h.nextRetryIn(200)).toBe(200);
    for (let i = 0; i < 10; i++) h.probeFailed("User", 300);
    expect(h.nextRetryIn(300)).toBe(STREAM_RETRY_MS.max);
    h.releaseType("User");
    expect(h.acknowledged(row("User", "u2"))).toEqual({ type: true, aggregate: false });
    expect(h.acknowledged(row("User", "u2"))).toBeUndefined();
    expect(h.holdType("User", 70_000)).toEqual({ fresh: true, retryInMs: STREAM_RETRY_MS.first });
  });

  it("holds a refused row's aggregate alone, from 0.5 s doubling to 30 s, and releases it when due", () => {
    const h = new RelayHolds();
    expect(h.holdAggregate(row("User", "big"), 7, 0)).toEqual({ fresh: true, retryInMs: ROW_RETRY_MS.first });
    expect(h.holds(row("User", "big"))).toBe(true);
    expect(h.holds(row("User", "small"))).toBe(false);
    expect(h.exclusion()).toEqual({ types: [], aggregates: [["User", "big"]] });
    expect(h.releaseDueAggregates(499)).toBe(0);
    expect(h.releaseDueAggregates(500)).toBe(1);
    let now = 500;
    for (let i = 0; i < 10; i++) {
      h.holdAggregate(row("User", "big"), 7, now);
      now += h.nextRetryIn(now)!;
      h.releaseDueAggregates(now);
    }
    h.holdAggregate(row("User", "big"), 7, now);
    expect(h.nextRetryIn(now)).toBe(ROW_RETRY_MS.max);
  });

  it(`holds the whole type once more than ${MAX_AGGREGATE_HOLDS} of its aggregates are refused, and its held aggregates go into it`, () => {
    const h = new RelayHolds();
    // Another type's refused aggregates do not count towards it (review: one refused course held every course).
    for (let i = 0; i < MAX_AGGREGATE_HOLDS; i++) h.holdAggregate(row("User", `u${i}`), 1, 0);
    expect(h.holdAggregate(row("Course", "c-first"), 1, 0)).toMatchObject({ fresh: true });
    expect(h.types).toBe(0);
    for (let i = 1; i < MAX_AGGREGATE_HOLDS; i++) h.holdAggregate(row("Course", `c${i}`), 1, 0);
    expect(h.aggregates).toBe(2 * MAX_AGGREGATE_HOLDS);
    const r = h.holdAggregate(row("Course", "one-more"), 1, 0);
    expect(r).toMatchObject({ type: true, retryInMs: ROW_RETRY_MS.max });
    expect(h.types).toBe(1);
    expect(h.aggregates).toBe(MAX_AGGREGATE_HOLDS);
    expect(h.holds(row("Course", "c-never-seen"))).toBe(true);
    expect(h.holds(row("User", "u-never-seen"))).toBe(false);
    expect(h.exclusion()?.types).toEqual(["Course"]);
  });

  it("tries a stream that refused every message on the rows' back-off, and lets a lost partition's held aggregates go", () => {
    const h = new RelayHolds();
    expect(h.holdType("Order", 0, true)).toEqual({ fresh: true, retryInMs: ROW_RETRY_MS.first });
    h.holdAggregate(row("User", "in-3"), 3, 0);
    h.holdAggregate(row("User", "in-4"), 4, 0);
    h.dropPartition(3);
    expect(h.holds(row("User", "in-3"))).toBe(false);
    expect(h.holds(row("User", "in-4"))).toBe(true);
    expect(h.aggregates).toBe(1);
  });

  it("is not due while its probe is on its way, and slows down past 2 s when a stream let go by its probe fails again before any ack", () => {
    const h = new RelayHolds();
    h.holdType("Order", 0);
    h.probeSent("Order");
    expect(h.dueTypes(10_000)).toEqual([]);
    expect(h.nextRetryIn(10_000)).toBeUndefined();
    let now = 0;
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      h.releaseType("Order");
      h.holdType("Order", now);
      const wait = h.nextRetryIn(now)!;
      waits.push(wait);
      now += wait;
    }
    expect(waits.slice(0, 7)).toEqual([100, 200, 400, 800, 1600, 2000, 4000]);
    expect(waits.at(-1)).toBe(ROW_RETRY_MS.max);
  });
});
