import { describe, expect, it } from "vitest";
import { deriveAccessId, domainEvent } from "../../../contracts/index.js";
import { MAX_PAYING_ORDERS, accessRecordDecider, accessView, expire, nextDeadline, payingOrders } from "../../../actors/access/index.js";
import { deciderSpec } from "../../support/decider-spec.js";

const now = "2026-05-01T08:00:00.000Z";
const later = "2026-06-01T00:00:00.000Z";
// A grant naming an order finds it (the runtime's facts): a paid order of u1 that bought c1, unless a test says otherwise.
const paidOrder = { user_id: "u1", course_ids: ["c1", "c2"], status: "paid" };
const spec = deciderSpec(accessRecordDecider, { now, facts: { order: paidOrder } });
const id = deriveAccessId("u1", "c1");
const ids = { access_id: id, user_id: "u1", course_id: "c1" };
const granted = (expires_at: string | null = null, order_id: string | null = null) => domainEvent("CourseAccessGranted", { ...ids, expires_at, order_id });
const revoked = domainEvent("AccessRevoked", { ...ids, reason: "order_refunded" });
const expired = domainEvent("AccessExpired", { ...ids, expired_at: later });
const progressed = (progress: number) => domainEvent("ProgressUpdated", { ...ids, progress });
const completed = domainEvent("CourseCompleted", ids);

const grant = (expires_at?: string | null, aggregate_id = id, order_id?: string) => ({
  type: "GrantCourseAccess" as const,
  aggregate_id,
  body: { user_id: "u1", course_id: "c1", ...(expires_at === undefined ? {} : { expires_at }), ...(order_id === undefined ? {} : { order_id }) },
  now,
});
/** A grant paid by `order_id`, open-ended unless `expires_at` is given. */
const paid = (order_id: string, expires_at: string | null = null) => grant(expires_at, id, order_id);
const revoke = { type: "RevokeCourseAccess" as const, aggregate_id: id, body: { reason: "order_refunded" }, now };
const progress = (p: number, at = now) => ({ type: "UpdateProgress" as const, aggregate_id: id, body: { progress: p }, now: at });

describe("AccessRecord: the order a grant names", () => {
  it.each([
    ["does not exist", null, "does not exist"],
    ["is another learner's", { ...paidOrder, user_id: "u2" }, "did not buy c1 for u1"],
    ["did not buy the course", { ...paidOrder, course_ids: ["c2"] }, "did not buy c1 for u1"],
    ["is only placed", { ...paidOrder, status: "placed" }, "is placed, not paid"],
    ["was refunded", { ...paidOrder, status: "refunded" }, "is refunded, not paid"],
  ])("refuses a grant naming an order that %s: rule_violated (a refund of it would not take the access back)", (_what, order, message) => {
    spec.given([]).when(paid("o-x"), { order }).thenThrows("rule_violated", message);
    // Nor does it move an active record to it.
    spec.given([granted(null, "o-1")]).when(paid("o-x"), { order }).thenThrows("rule_violated", message);
  });

  it("needs no order for a grant naming none, and is internal when the runtime did not look the named one up", () => {
    spec.given([]).when(grant(), { order: undefined }).then([granted()]);
    spec.given([]).when(paid("o-1"), { order: undefined }).thenThrows("internal", "order");
  });
});

describe("AccessRecord: an id that is no access id", () => {
  it.each(["u1", "acc_123", `acc_${"A".repeat(32)}`])("refuses RevokeCourseAccess and UpdateProgress on %s: invalid_request (a bad id), not not_found", (bad) => {
    spec.given([]).when({ ...revoke, aggregate_id: bad }).thenThrows("invalid_request", "not an access id");
    spec.given([]).when({ ...progress(10), aggregate_id: bad }).thenThrows("invalid_request", "not an access id");
  });
});

describe("AccessRecord: GrantCourseAccess", () => {
  it("grants open-ended access", () => {
    const state = spec.given([]).when(grant()).then([granted()]);
    expect(state).toMatchObject({ status: "active", progress: 0, completed: false, expires_at: null });
  });

  it("grants access until a future moment", () => {
    spec.given([]).when(grant(later)).then([granted(later)]);
  });

  it.each([now, "2026-04-30T00:00:00.000Z"])("refuses an expires_at that is not after now (%s): rule_violated, the body itself being well formed", (at) => {
    spec.given([]).when(grant(at)).thenThrows("rule_violated", "expires_at");
  });

  it("refuses an aggregate id that is not derived from user and course", () => {
    const err = spec.given([]).when(grant(null, deriveAccessId("u1", "c2"))).thenThrows("invalid_request", "access id");
    expect(err.details).toEqual({ expected: id });
  });

  it("does nothing when the same grant is active already", () => {
    spec.given([granted()]).when(grant()).thenNothingHappened();
    spec.given([granted()]).when(grant(null)).thenNothingHappened();
    spec.given([granted(later)]).when(grant(later)).thenNothingHappened();
  });

  it("re-grants an active record to move its expiry (the latest grant wins)", () => {
    expect(spec.given([granted(later)]).when(grant()).then([granted()])?.expires_at).toBeNull();
    expect(spec.given([granted()]).when(grant(later)).then([granted(later)])?.expires_at).toBe(later);
  });

  it("grants a revoked record again, keeping progress", () => {
    const state = spec.given([granted(), progressed(40), revoked]).when(grant()).then([granted()]);
    expect(state).toMatchObject({ status: "active", progress: 40, completed: false });
  });

  it("grants an expired record again, keeping progress and completion", () => {
    const state = spec.given([granted(later), progressed(100), completed, expired]).when(grant()).then([granted()]);
    expect(state).toMatchObject({ status: "active", progress: 100, completed: true });
  });
});

describe("AccessRecord: GrantCourseAccess with the paying order (CourseAccessGranted version 2)", () => {
  it("records the order that paid, in the event, the state and the view", () => {
    const state = spec.given([]).when(paid("o-1")).then([granted(null, "o-1")]);
    expect(state?.order_id).toBe("o-1");
    expect(accessView(state!, 1)).toMatchObject({ order_id: "o-1", version: 1 });
  });

  it("names no order (null) for a grant without one", () => {
    expect(spec.given([]).when(grant()).then([granted(null, null)])?.order_id).toBeNull();
  });

  it("names the latest order that paid for an active record and remembers the earlier ones (was: a no-op, so a refund of the first took what the second paid for)", () => {
    const state = spec.given([granted(null, "o-1")]).when(paid("o-2")).then([granted(null, "o-2")]);
    expect(state).toMatchObject({ status: "active", order_id: "o-2", paid_by: ["o-1", "o-2"] });
    spec.given([granted(later, "o-1")]).when(paid("o-2", later)).then([granted(later, "o-2")]);
    // Moved back to the first (its payment still stands after the second's refund): both remembered, the first last.
    expect(spec.given([granted(null, "o-1"), granted(null, "o-2")]).when(paid("o-1")).then([granted(null, "o-1")])).toMatchObject({ order_id: "o-1", paid_by: ["o-2", "o-1"] });
  });

  it(`remembers the latest ${MAX_PAYING_ORDERS} paying orders only: refunded ones cannot pile up in the state for good`, () => {
    const orders = Array.from({ length: MAX_PAYING_ORDERS + 10 }, (_, i) => `o-${i}`);
    const state = spec.given(orders.slice(0, -1).map((o) => granted(null, o))).when(paid(orders.at(-1)!)).then([granted(null, orders.at(-1)!)]);
    expect(payingOrders(state)).toEqual(orders.slice(-MAX_PAYING_ORDERS));
    expect(state?.order_id).toBe(orders.at(-1));
  });

  it("does nothing when the order it names pays again, or a grant names none", () => {
    // The same order again (a redelivered OrderPaid without its idempotency key).
    spec.given([granted(null, "o-1")]).when(paid("o-1")).thenNothingHappened();
    spec.given([granted(null, "o-1"), granted(null, "o-2")]).when(paid("o-2")).thenNothingHappened();
    spec.given([granted(null, "o-1")]).when(grant(null)).thenNothingHappened();
    spec.given([granted(null, null)]).when(grant()).thenNothingHappened();
  });

  it("starts its paying orders afresh when granted again after a revocation or expiry, and keeps them out of the view", () => {
    const state = spec.given([granted(null, "o-1"), granted(null, "o-2"), revoked]).when(paid("o-3")).then([granted(null, "o-3")]);
    expect(payingOrders(state)).toEqual(["o-3"]);
    expect(payingOrders(spec.given([granted(null, "o-1"), revoked]).when(grant()).then([granted(null, null)]))).toEqual([]);
    const twice = spec.given([granted(null, "o-1")]).when(paid("o-2")).then([granted(null, "o-2")]);
    expect(accessView(twice!, 2)).toEqual({ ...ids, status: "active", progress: 0, completed: false, expires_at: null, order_id: "o-2", version: 2 });
  });

  it("starts afresh when granted past the record's expires_at, its timer not fired yet: the orders of the access that ended are not carried on (was: a refund of the new order moved the access to the old one, open-ended)", () => {
    const soon = "2026-05-08T08:00:00.000Z";
    const after = "2026-05-08T08:00:01.000Z";
    const state = spec.given([granted(soon, "o-old")]).when({ ...paid("o-new"), now: after }).then([granted(null, "o-new")]);
    expect(payingOrders(state)).toEqual(["o-new"]);
    expect(state).toMatchObject({ status: "active", order_id: "o-new", expires_at: null });
    // The same grant again past the expiry is a grant, not a no-op: the record had ended.
    spec.given([granted(soon, "o-old")]).when({ ...grant(later), now: after }).then([granted(later, null)]);
    // Before the expiry, as ever: both remembered.
    expect(payingOrders(spec.given([granted(soon, "o-old")]).when(paid("o-new")).then([granted(null, "o-new")]))).toEqual(["o-old", "o-new"]);
  });

  it("moves an active grant's expiry with the order that names the new one", () => {
    expect(spec.given([granted(later, "o-1")]).when(paid("o-2")).then([granted(null, "o-2")])?.order_id).toBe("o-2");
  });

  it("keeps the paying order when an expiry is moved without naming one", () => {
    expect(spec.given([granted(null, "o-1")]).when(grant(later)).then([granted(later, "o-1")])?.order_id).toBe("o-1");
  });

  it("re-grants a revoked or expired record with the order of the new grant, or none", () => {
    spec.given([granted(null, "o-1"), revoked]).when(paid("o-2")).then([granted(null, "o-2")]);
    spec.given([granted(null, "o-1"), revoked]).when(grant()).then([granted(null, null)]);
    spec.given([granted(later, "o-1"), expired]).when(paid("o-3")).then([granted(null, "o-3")]);
  });

  it("keeps the order across revocation, expiry, progress and completion", () => {
    const state = spec.given([granted(later, "o-1"), progressed(100), completed, expired]).state;
    expect(state).toMatchObject({ status: "expired", completed: true, order_id: "o-1" });
  });

  it("reads a record stored before version 2 (no order_id in its snapshot) as having no order", () => {
    const { order_id: _none, ...legacy } = spec.given([granted(later)]).state!;
    expect(accessView(legacy, 1)).toEqual({ ...ids, status: "active", progress: 0, completed: false, expires_at: later, order_id: null, version: 1 });
    expect(accessRecordDecider.decide(paid("o-2", later), legacy, { order: paidOrder })).toStrictEqual([granted(later, "o-2")]);
    expect(accessRecordDecider.decide(grant(later), legacy, { order: paidOrder })).toStrictEqual([]);
    expect(accessRecordDecider.decide(grant(null), legacy, { order: paidOrder })).toStrictEqual([granted(null, null)]);
    expect(accessRecordDecider.decide(paid("o-2"), legacy, { order: paidOrder })).toStrictEqual([granted(null, "o-2")]);
  });
});

describe("AccessRecord: RevokeCourseAccess", () => {
  it("is not_found for an unknown record", () => {
    spec.given([]).when(revoke).thenThrows("not_found");
  });

  it("revokes active access", () => {
    expect(spec.given([granted()]).when(revoke).then([revoked])?.status).toBe("revoked");
  });

  it.each([
    ["revoked", [granted(), revoked]],
    ["expired", [granted(later), expired]],
  ] as const)("does nothing when %s already", (_, given) => {
    spec.given([...given]).when(revoke).thenNothingHappened();
  });
});

describe("AccessRecord: UpdateProgress", () => {
  it("is not_found for an unknown record", () => {
    spec.given([]).when(progress(10)).thenThrows("not_found");
  });

  it("records progress that goes up", () => {
    expect(spec.given([granted(), progressed(10)]).when(progress(35)).then([progressed(35)])?.progress).toBe(35);
  });

  it("completes the course on reaching 100: 99 → 100 emits both events", () => {
    const state = spec.given([granted(), progressed(99)]).when(progress(100)).then([progressed(100), completed]);
    expect(state).toMatchObject({ progress: 100, completed: true });
  });

  it("does nothing for 100 again", () => {
    spec.given([granted(), progressed(100), completed]).when(progress(100)).thenNothingHappened();
  });

  it("does nothing for lower or equal progress: progress never goes down", () => {
    spec.given([granted(), progressed(50)]).when(progress(20)).thenNothingHappened();
    spec.given([granted(), progressed(50)]).when(progress(50)).thenNothingHappened();
    spec.given([granted()]).when(progress(0)).thenNothingHappened();
  });

  it.each([
    ["revoked", [granted(), revoked]],
    ["expired", [granted(later), expired]],
  ] as const)("refuses progress on a %s record", (status, given) => {
    spec.given([...given]).when(progress(60)).thenThrows("rule_violated", status);
  });

  it("refuses progress once expires_at has come, even before the timer fires", () => {
    spec.given([granted(later)]).when(progress(60, later)).thenThrows("rule_violated", "expired at");
  });

  it.each([101, -1, 2.5])("refuses progress %s as invalid_request", (p) => {
    spec.given([granted()]).when(progress(p)).thenThrows("invalid_request", "progress");
  });
});

describe("AccessRecord: expiry timer", () => {
  const active = spec.given([granted(later)]).state;

  it("expires an active record at its expires_at, and later", () => {
    expect(expire(active, later)).toStrictEqual([expired]);
    expect(expire(active, "2026-07-01T00:00:00.000Z")).toStrictEqual([expired]);
  });

  it("leaves a record alone before its expires_at", () => {
    expect(expire(active, "2026-05-31T23:59:59.999Z")).toStrictEqual([]);
  });

  it("leaves open-ended, revoked, expired and missing records alone", () => {
    expect(expire(spec.given([granted()]).state, later)).toStrictEqual([]);
    expect(expire(spec.given([granted(later), revoked]).state, later)).toStrictEqual([]);
    expect(expire(spec.given([granted(later), expired]).state, later)).toStrictEqual([]);
    expect(expire(null, later)).toStrictEqual([]);
  });

  it("names the next deadline of an active record only", () => {
    expect(nextDeadline(active)).toBe(later);
    expect(nextDeadline(spec.given([granted()]).state)).toBeNull();
    expect(nextDeadline(spec.given([granted(later), revoked]).state)).toBeNull();
    expect(nextDeadline(null)).toBeNull();
  });

  it("evolves an expired record into status expired, keeping its expires_at", () => {
    const state = accessRecordDecider.evolve(active, { ...expire(active, later)[0]!, occurred_on: later });
    expect(accessView(state, 2)).toEqual({ ...ids, status: "expired", progress: 0, completed: false, expires_at: later, order_id: null, version: 2 });
  });
});
