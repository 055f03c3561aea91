import { describe, expect, it } from "vitest";
import { domainEvent } from "../../contracts/index.js";
import { fold, recordAt } from "../../actors/decider.js";
import { orderDecider } from "../../actors/orders/index.js";
import { userDecider } from "../../actors/users/index.js";
import { deciderSpec, SPEC_NOW } from "../support/decider-spec.js";

const registered = domainEvent("UserRegistered", { user_id: "u1", email: "ann@example.com", name: "Ann" });
const register = { type: "RegisterUser" as const, aggregate_id: "u1", body: { email: "ann@example.com", name: "Ann" } };

describe("decider helpers", () => {
  it("recordAt stamps decided events with when they happened", () => {
    expect(recordAt([registered], SPEC_NOW)).toStrictEqual([{ ...registered, occurred_on: SPEC_NOW }]);
  });

  it("fold starts from nothing, or from a given state", () => {
    expect(fold(userDecider, [])).toBeNull();
    const state = fold(userDecider, recordAt([registered], SPEC_NOW));
    const changed = recordAt([domainEvent("UserEmailChanged", { user_id: "u1", old_email: "ann@example.com", new_email: "a@b.example" })], SPEC_NOW);
    expect(fold(userDecider, changed, state)?.email).toBe("a@b.example");
  });

  it("hands evolve the time an event happened", () => {
    const placed = domainEvent("OrderPlaced", { order_id: "o1", user_id: "u1", course_ids: ["c1"], total_amount: { amount: 1, currency: "EUR" } });
    const paid = domainEvent("OrderPaid", { order_id: "o1", user_id: "u1", course_ids: ["c1"], payment_id: "p" });
    expect(fold(orderDecider, [...recordAt([placed], SPEC_NOW), ...recordAt([paid], "2026-02-02T00:00:00.000Z")])?.paid_at).toBe("2026-02-02T00:00:00.000Z");
  });
});

describe("deciderSpec catches what it should", () => {
  const spec = deciderSpec(userDecider);

  it("fails then() on other events", () => {
    expect(() => spec.given([]).when(register).then([])).toThrow();
  });

  it("fails thenNothingHappened() when events happen", () => {
    expect(() => spec.given([]).when(register).thenNothingHappened()).toThrow();
  });

  it("fails thenThrows() on success, on another code and on another message", () => {
    expect(() => spec.given([]).when(register).thenThrows("conflict")).toThrow(/got success/);
    expect(() => spec.given([registered]).when(register).thenThrows("not_found")).toThrow();
    expect(() => spec.given([registered]).when(register).thenThrows("conflict", "nonsense")).toThrow();
  });

  it("fails then() on an event that breaks the contract", () => {
    const bad = { ...userDecider, decide: () => [domainEvent("UserRegistered", { user_id: "u1", email: "NOT-AN-EMAIL", name: "Ann" })] };
    expect(() => deciderSpec(bad).given([]).when(register).then([domainEvent("UserRegistered", { user_id: "u1", email: "NOT-AN-EMAIL", name: "Ann" })])).toThrow(/payload/);
  });

  it("fails then() on an event the command does not declare", () => {
    const e = domainEvent("UserEmailChanged", { user_id: "u1", old_email: "a@b.example", new_email: "c@d.example" });
    const bad = { ...userDecider, decide: () => [e] };
    expect(() => deciderSpec(bad).given([registered]).when(register).then([e])).toThrow(/does not declare/);
  });
});
