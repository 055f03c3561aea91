import { describe, expect, it } from "vitest";
import { domainEvent, type Money } from "../../../contracts/index.js";
import { orderDecider, orderView, type CatalogCourseFact, type OrderFacts, type RefundPolicyFact } from "../../../actors/orders/index.js";
import { deciderSpec } from "../../support/decider-spec.js";

const id = "o1";
const eur = (amount: number): Money => ({ amount, currency: "EUR" });
const forSale = (price: Money | null = eur(1000)): CatalogCourseFact => ({ status: "active", price });
const placeFacts: OrderFacts = { userExists: true, courses: { c1: forSale(eur(1000)), c2: forSale(eur(2500)) }, activeAccess: [] };
const spec = deciderSpec(orderDecider, { facts: placeFacts });

const paidAt = "2026-03-01T10:00:00.000Z";
const placed = domainEvent("OrderPlaced", { order_id: id, user_id: "u1", course_ids: ["c1", "c2"], total_amount: eur(3500) });
const paid = { ...domainEvent("OrderPaid", { order_id: id, user_id: "u1", course_ids: ["c1", "c2"], payment_id: "pay_1" }), occurred_on: paidAt };
const cancelled = domainEvent("OrderCancelled", { order_id: id, user_id: "u1" });
const refunded = domainEvent("OrderRefunded", { order_id: id, user_id: "u1", course_ids: ["c1", "c2"], refund_reason: "changed my mind" });

const place = (course_ids: string[] = ["c1", "c2"], total_amount?: Money) => ({
  type: "PlaceOrder" as const,
  aggregate_id: id,
  body: { user_id: "u1", course_ids, ...(total_amount ? { total_amount } : {}) },
});
const pay = (payment_id = "pay_1", now = paidAt) => ({ type: "MarkOrderPaid" as const, aggregate_id: id, body: { payment_id }, now });
const cancel = { type: "CancelOrder" as const, aggregate_id: id, body: {} };
const refund = (now: string) => ({ type: "RefundOrder" as const, aggregate_id: id, body: { refund_reason: "changed my mind" }, now });

describe("Order: PlaceOrder", () => {
  it("places an order whose total is the sum of the catalog prices", () => {
    const state = spec.given([]).when(place()).then([placed]);
    expect(state).toMatchObject({ status: "placed", payment_id: null, paid_at: null });
  });

  it("accepts a total_amount that matches", () => {
    spec.given([]).when(place(["c1", "c2"], eur(3500))).then([placed]);
  });

  it("refuses a total_amount that differs in amount", () => {
    const err = spec.given([]).when(place(["c1", "c2"], eur(3000))).thenThrows("rule_violated", "total_amount");
    expect(err.details).toEqual({ expected: eur(3500), given: eur(3000) });
  });

  it("refuses a total_amount that differs in currency", () => {
    spec.given([]).when(place(["c1", "c2"], { amount: 3500, currency: "USD" })).thenThrows("rule_violated", "total_amount");
  });

  it("refuses courses priced in different currencies", () => {
    const courses = { c1: forSale(eur(1000)), c2: forSale({ amount: 2500, currency: "USD" }) };
    const err = spec.given([]).when(place(), { courses }).thenThrows("rule_violated", "one currency");
    expect(err.details).toEqual({ currencies: ["EUR", "USD"] });
  });

  it("refuses a user who does not exist", () => {
    spec.given([]).when(place(), { userExists: false }).thenThrows("rule_violated", "user u1 does not exist");
  });

  it.each([
    ["does not exist (null)", { c1: forSale(), c2: null }, "does_not_exist"],
    ["does not exist (no entry)", { c1: forSale() }, "does_not_exist"],
    ["is deprecated", { c1: forSale(), c2: { status: "deprecated", price: eur(1) } }, "deprecated"],
    ["has no price", { c1: forSale(), c2: forSale(null) }, "not_for_sale"],
  ] as [string, Record<string, CatalogCourseFact | null>, string][])("refuses a course that %s, naming it", (_, courses, reason) => {
    const err = spec.given([]).when(place(), { courses }).thenThrows("rule_violated", "course c2");
    expect(err.details).toEqual({ courses: [{ course_id: "c2", reason }] });
  });

  it("names every refused course at once", () => {
    const err = spec.given([]).when(place(), { courses: { c1: null, c2: forSale(null) } }).thenThrows("rule_violated");
    expect(err.details).toEqual({ courses: [{ course_id: "c1", reason: "does_not_exist" }, { course_id: "c2", reason: "not_for_sale" }] });
  });

  it("refuses a course the user already holds active access to", () => {
    const err = spec.given([]).when(place(), { activeAccess: ["c9", "c2"] }).thenThrows("rule_violated", "course c2: access already held");
    expect(err.details).toEqual({ courses: [{ course_id: "c2", reason: "access_already_held" }] });
  });

  it("ignores active access to courses outside the order", () => {
    spec.given([]).when(place(), { activeAccess: ["c9"] }).then([placed]);
  });

  it("places an order of 50 courses", () => {
    const ids = Array.from({ length: 50 }, (_, i) => `c${i}`);
    const courses = Object.fromEntries(ids.map((c) => [c, forSale(eur(100))]));
    spec
      .given([])
      .when(place(ids), { courses })
      .then([domainEvent("OrderPlaced", { order_id: id, user_id: "u1", course_ids: ids, total_amount: eur(5000) })]);
  });

  it("is a conflict when the order exists already", () => {
    spec.given([placed]).when(place()).thenThrows("conflict", "o1");
  });

  it("is internal when the runtime did not supply the catalog", () => {
    deciderSpec(orderDecider).given([]).when(place(), { userExists: true, activeAccess: [] }).thenThrows("internal", "courses");
  });
});

describe("Order: MarkOrderPaid", () => {
  it("is not_found for an unknown order", () => {
    spec.given([]).when(pay()).thenThrows("not_found");
  });

  it("pays a placed order and records when", () => {
    const { occurred_on: _, ...event } = paid;
    const state = spec.given([placed]).when(pay()).then([event]);
    expect(state).toMatchObject({ status: "paid", payment_id: "pay_1", paid_at: paidAt });
  });

  it("does nothing for the same payment again", () => {
    spec.given([placed, paid]).when(pay("pay_1", "2026-03-02T00:00:00.000Z")).thenNothingHappened();
  });

  it("is a conflict for a different payment of a paid order", () => {
    spec.given([placed, paid]).when(pay("pay_2")).thenThrows("conflict", "another payment");
  });

  it.each([
    ["cancelled", [placed, cancelled]],
    ["refunded", [placed, paid, refunded]],
  ] as const)("refuses a %s order a new payment", (status, given) => {
    spec.given([...given]).when(pay("pay_2")).thenThrows("rule_violated", status);
  });

  it("does nothing for the payment that paid it repeated after a refund (a webhook redelivered late)", () => {
    spec.given([placed, paid, refunded]).when(pay("pay_1", "2026-04-01T00:00:00.000Z")).thenNothingHappened();
  });

  it("refuses a cancelled order even the payment id it never had", () => {
    spec.given([placed, cancelled]).when(pay()).thenThrows("rule_violated", "cancelled");
  });
});

describe("Order: CancelOrder", () => {
  it("is not_found for an unknown order", () => {
    spec.given([]).when(cancel).thenThrows("not_found");
  });

  it("cancels a placed order", () => {
    expect(spec.given([placed]).when(cancel).then([cancelled])?.status).toBe("cancelled");
  });

  it("does nothing when cancelled already", () => {
    spec.given([placed, cancelled]).when(cancel).thenNothingHappened();
  });

  it.each([
    ["paid", [placed, paid]],
    ["refunded", [placed, paid, refunded]],
  ] as const)("refuses a %s order", (status, given) => {
    spec.given([...given]).when(cancel).thenThrows("rule_violated", status);
  });
});

describe("Order: RefundOrder", () => {
  const standard = (days = 14): RefundPolicyFact => ({ type: "standard", refund_period_days: days, max_progress_percent: null });
  const conditional: RefundPolicyFact = { type: "conditional", refund_period_days: 30, max_progress_percent: 20 };
  const noRefund: RefundPolicyFact = { type: "no_refund", refund_period_days: 0, max_progress_percent: null };
  const lastInstant = "2026-03-15T10:00:00.000Z"; // paid_at + 14 days
  const facts = (c2: RefundPolicyFact | null, progress: Record<string, number> = {}) => ({ policies: { c1: standard(30), c2 }, progress });

  it("is not_found for an unknown order", () => {
    spec.given([]).when(refund(lastInstant), facts(standard())).thenThrows("not_found");
  });

  it.each([
    ["placed", [placed]],
    ["cancelled", [placed, cancelled]],
  ] as const)("refuses a %s order", (status, given) => {
    spec.given([...given]).when(refund(lastInstant), facts(standard())).thenThrows("rule_violated", status);
  });

  it("does nothing when refunded already", () => {
    spec.given([placed, paid, refunded]).when(refund(lastInstant), facts(standard())).thenNothingHappened();
  });

  it("refunds on the last instant of a standard policy's period", () => {
    expect(spec.given([placed, paid]).when(refund(lastInstant), facts(standard())).then([refunded])?.status).toBe("refunded");
  });

  it("refuses one day after the period, naming the course and why", () => {
    const err = spec.given([placed, paid]).when(refund("2026-03-16T10:00:00.000Z"), facts(standard())).thenThrows("rule_violated", "course c2: refund period over");
    expect(err.details).toEqual({ courses: [{ course_id: "c2", reason: "refund_period_over", refund_period_days: 14, ended_at: lastInstant }] });
  });

  it("refuses a millisecond after the period", () => {
    spec.given([placed, paid]).when(refund("2026-03-15T10:00:00.001Z"), facts(standard())).thenThrows("rule_violated", "refund period over");
  });

  it("refunds a conditional course while progress is at the maximum", () => {
    spec.given([placed, paid]).when(refund(lastInstant), facts(conditional, { c1: 90, c2: 20 })).then([refunded]);
  });

  it("refuses a conditional course one percent above the maximum", () => {
    const err = spec.given([placed, paid]).when(refund(lastInstant), facts(conditional, { c2: 21 })).thenThrows("rule_violated", "progress too high");
    expect(err.details).toEqual({ courses: [{ course_id: "c2", reason: "progress_too_high", progress: 21, max_progress_percent: 20 }] });
  });

  it("refuses a conditional course after its period, however little progress", () => {
    spec.given([placed, paid]).when(refund("2026-04-01T10:00:00.000Z"), facts(conditional, { c2: 0 })).thenThrows("rule_violated", "refund period over");
  });

  it("counts a course without progress as 0", () => {
    spec.given([placed, paid]).when(refund(lastInstant), facts({ ...conditional, max_progress_percent: 0 })).then([refunded]);
  });

  it("never refunds under a no_refund policy", () => {
    spec.given([placed, paid]).when(refund(paidAt), facts(noRefund)).thenThrows("rule_violated", "course c2: no refund");
  });

  it("refuses when a course's policy cannot be found", () => {
    spec.given([placed, paid]).when(refund(paidAt), facts(null)).thenThrows("rule_violated", "course c2: policy unknown");
  });

  it("names every refusing course", () => {
    const err = spec.given([placed, paid]).when(refund(paidAt), { policies: { c1: noRefund, c2: noRefund }, progress: {} }).thenThrows("rule_violated");
    expect(err.details?.courses).toHaveLength(2);
  });

  it("is internal when the runtime did not supply the policies", () => {
    spec.given([placed, paid]).when(refund(paidAt), { progress: {} }).thenThrows("internal", "policies");
  });
});

describe("Order: view", () => {
  it("shows the order as GetOrder returns it, without paid_at", () => {
    const { state } = spec.given([placed, paid]);
    expect(orderView(state!, 2)).toEqual({
      order_id: id,
      user_id: "u1",
      course_ids: ["c1", "c2"],
      total_amount: eur(3500),
      status: "paid",
      payment_id: "pay_1",
      version: 2,
    });
  });
});
