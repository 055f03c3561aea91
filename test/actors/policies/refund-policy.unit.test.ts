import { describe, expect, it } from "vitest";
import { domainEvent } from "../../../contracts/index.js";
import { policyView, refundPolicyDecider } from "../../../actors/policies/index.js";
import { deciderSpec } from "../../support/decider-spec.js";

const spec = deciderSpec(refundPolicyDecider);
const id = "p1";
const created = {
  standard: domainEvent("PolicyCreated", { policy_id: id, name: "14 days", type: "standard", refund_period_days: 14 }),
  conditional: domainEvent("PolicyCreated", { policy_id: id, name: "Try it", type: "conditional", refund_period_days: 30, max_progress_percent: 20 }),
  no_refund: domainEvent("PolicyCreated", { policy_id: id, name: "Final", type: "no_refund", refund_period_days: 0 }),
};
const deprecated = domainEvent("PolicyDeprecated", { policy_id: id, name: "14 days", replacement_policy_id: null });

type CreateBody = { name: string; type: "standard" | "conditional" | "no_refund"; refund_period_days: number; max_progress_percent?: number };
const create = (body: CreateBody) => ({ type: "CreatePolicy" as const, aggregate_id: id, body });
const update = (new_conditions: { refund_period_days?: number; max_progress_percent?: number }) => ({
  type: "UpdatePolicy" as const,
  aggregate_id: id,
  body: { new_conditions },
});
const deprecate = (replacement_policy_id?: string | null) => ({
  type: "DeprecatePolicy" as const,
  aggregate_id: id,
  body: replacement_policy_id === undefined ? {} : { replacement_policy_id },
});

describe("RefundPolicy: CreatePolicy", () => {
  it.each(Object.values(created))("creates a consistent $payload.type policy", (event) => {
    const { policy_id: _, ...body } = event.payload;
    const state = spec.given([]).when(create(body)).then([event]);
    expect(state?.status).toBe("active");
  });

  it.each([
    [{ name: "x", type: "standard", refund_period_days: 0 }, "at least 1"],
    [{ name: "x", type: "standard", refund_period_days: 14, max_progress_percent: 10 }, "only a conditional"],
    [{ name: "x", type: "conditional", refund_period_days: 0, max_progress_percent: 10 }, "at least 1"],
    [{ name: "x", type: "conditional", refund_period_days: 14 }, "needs max_progress_percent"],
    [{ name: "x", type: "no_refund", refund_period_days: 1 }, "refund_period_days 0"],
    [{ name: "x", type: "no_refund", refund_period_days: 0, max_progress_percent: 0 }, "only a conditional"],
  ] as [CreateBody, string][])("refuses %o as invalid_request", (body, message) => {
    spec.given([]).when(create(body)).thenThrows("invalid_request", message);
  });

  it("is a conflict when the policy exists already", () => {
    spec.given([created.standard]).when(create({ name: "again", type: "standard", refund_period_days: 7 })).thenThrows("conflict", "p1");
  });
});

describe("RefundPolicy: UpdatePolicy", () => {
  it("is not_found for an unknown policy", () => {
    spec.given([]).when(update({ refund_period_days: 7 })).thenThrows("not_found");
  });

  it("changes the refund period of a standard policy", () => {
    const state = spec
      .given([created.standard])
      .when(update({ refund_period_days: 30 }))
      .then([domainEvent("PolicyUpdated", { policy_id: id, new_conditions: { refund_period_days: 30 } })]);
    expect(state?.refund_period_days).toBe(30);
  });

  it("names only the conditions that change", () => {
    const state = spec
      .given([created.conditional])
      .when(update({ refund_period_days: 30, max_progress_percent: 50 }))
      .then([domainEvent("PolicyUpdated", { policy_id: id, new_conditions: { max_progress_percent: 50 } })]);
    expect(state).toMatchObject({ refund_period_days: 30, max_progress_percent: 50 });
  });

  it("does nothing when nothing changes", () => {
    spec.given([created.conditional]).when(update({ refund_period_days: 30, max_progress_percent: 20 })).thenNothingHappened();
    spec.given([created.no_refund]).when(update({ refund_period_days: 0 })).thenNothingHappened();
  });

  it.each([
    ["standard", { max_progress_percent: 10 }, "only a conditional"],
    ["standard", { refund_period_days: 0 }, "at least 1"],
    ["conditional", { refund_period_days: 0 }, "at least 1"],
    ["no_refund", { refund_period_days: 5 }, "refund_period_days 0"],
    ["no_refund", { max_progress_percent: 5 }, "only a conditional"],
  ] as const)("keeps a %s policy consistent with its type: %o is rule_violated", (type, conditions, message) => {
    spec.given([created[type]]).when(update(conditions)).thenThrows("rule_violated", message);
  });

  it("takes no updates once deprecated", () => {
    spec.given([created.standard, deprecated]).when(update({ refund_period_days: 30 })).thenThrows("rule_violated", "deprecated");
  });
});

describe("RefundPolicy: DeprecatePolicy", () => {
  it("is not_found for an unknown policy", () => {
    spec.given([]).when(deprecate()).thenThrows("not_found");
  });

  it("deprecates without a replacement, needing no facts", () => {
    const state = spec.given([created.standard]).when(deprecate()).then([deprecated]);
    expect(state).toMatchObject({ status: "deprecated", replacement_policy_id: null });
    spec.given([created.standard]).when(deprecate(null)).then([deprecated]);
  });

  it("deprecates in favour of an active replacement", () => {
    const state = spec
      .given([created.standard])
      .when(deprecate("p2"), { replacement: { status: "active" } })
      .then([domainEvent("PolicyDeprecated", { policy_id: id, name: "14 days", replacement_policy_id: "p2" })]);
    expect(state?.replacement_policy_id).toBe("p2");
  });

  it("refuses itself as the replacement", () => {
    spec.given([created.standard]).when(deprecate(id), { replacement: { status: "active" } }).thenThrows("rule_violated", "itself");
  });

  it("refuses a replacement that does not exist", () => {
    const err = spec.given([created.standard]).when(deprecate("p9"), { replacement: null }).thenThrows("rule_violated", "replacement policy p9 does not exist");
    expect(err.details).toEqual({ replacement_policy_id: "p9" });
  });

  it("refuses a deprecated replacement", () => {
    spec.given([created.standard]).when(deprecate("p2"), { replacement: { status: "deprecated" } }).thenThrows("rule_violated", "p2 is deprecated");
  });

  it("is internal when the runtime did not look the replacement up", () => {
    spec.given([created.standard]).when(deprecate("p2")).thenThrows("internal", "replacement");
  });

  it("does nothing when the policy is deprecated already, asked again as it was or naming no replacement", () => {
    spec.given([created.standard, deprecated]).when(deprecate()).thenNothingHappened();
    spec.given([created.standard, deprecated]).when(deprecate(null)).thenNothingHappened();
    const withP2 = domainEvent("PolicyDeprecated", { policy_id: id, name: "14 days", replacement_policy_id: "p2" });
    spec.given([created.standard, withP2]).when(deprecate("p2"), { replacement: { status: "active" } }).thenNothingHappened();
    spec.given([created.standard, withP2]).when(deprecate()).thenNothingHappened();
  });

  it("refuses another replacement for a policy deprecated already (was: ok with no events, the replacement ignored): rule_violated naming the one it has", () => {
    const err = spec.given([created.standard, deprecated]).when(deprecate("p2"), { replacement: { status: "active" } }).thenThrows("rule_violated", "deprecated already");
    expect(err.details).toEqual({ replacement_policy_id: null });
    const withP2 = domainEvent("PolicyDeprecated", { policy_id: id, name: "14 days", replacement_policy_id: "p2" });
    spec.given([created.standard, withP2]).when(deprecate("p3"), { replacement: { status: "active" } }).thenThrows("rule_violated", "with replacement p2");
  });
});

describe("RefundPolicy: view", () => {
  it("shows the policy as GetPolicy returns it", () => {
    const { state } = spec.given([created.conditional, domainEvent("PolicyUpdated", { policy_id: id, new_conditions: { max_progress_percent: 40 } })]);
    expect(policyView(state!, 2)).toEqual({
      policy_id: id,
      name: "Try it",
      type: "conditional",
      refund_period_days: 30,
      max_progress_percent: 40,
      status: "active",
      replacement_policy_id: null,
      version: 2,
    });
  });
});
