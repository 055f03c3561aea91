/** The RefundPolicy aggregate: the refund rules a course points to (CONTRACT.md §2–§3). */
import { domainEvent, errors, type PolicyType, type QueryResult } from "../../contracts/index.js";
import type { Decider, RecordedEvent } from "../decider.js";
import { required } from "../facts.js";

/** A policy's lifecycle status. */
export const PolicyStatus = { Active: "active", Deprecated: "deprecated" } as const;
/** A policy's lifecycle status. */
export type PolicyStatus = (typeof PolicyStatus)[keyof typeof PolicyStatus];

/** A refund policy's state; `max_progress_percent` is set for `conditional` policies only. */
export type RefundPolicyState = {
  policy_id: string;
  name: string;
  type: PolicyType;
  refund_period_days: number;
  max_progress_percent: number | null;
  status: PolicyStatus;
  replacement_policy_id: string | null;
};

/**
 * Facts the runtime supplies. Only DeprecatePolicy with a non-null `replacement_policy_id` needs one:
 * `replacement` is that policy's current status, or `null` when no such policy exists.
 */
export type RefundPolicyFacts = { replacement?: { status: PolicyStatus } | null };

type PolicyCommand = "CreatePolicy" | "UpdatePolicy" | "DeprecatePolicy";
type PolicyEvent = "PolicyCreated" | "PolicyUpdated" | "PolicyDeprecated";
type Conditions = Pick<RefundPolicyState, "refund_period_days" | "max_progress_percent">;

/** Says why conditions do not fit a policy type, or returns null when they do. */
function inconsistency(type: PolicyType, c: Conditions): string | null {
  const hasMax = c.max_progress_percent !== null;
  switch (type) {
    case "standard":
      if (c.refund_period_days < 1) return "a standard policy needs refund_period_days of at least 1";
      return hasMax ? "only a conditional policy has max_progress_percent" : null;
    case "conditional":
      if (c.refund_period_days < 1) return "a conditional policy needs refund_period_days of at least 1";
      return hasMax ? null : "a conditional policy needs max_progress_percent";
    case "no_refund":
      if (c.refund_period_days !== 0) return "a no_refund policy has refund_period_days 0";
      return hasMax ? "only a conditional policy has max_progress_percent" : null;
  }
}

/** The RefundPolicy decider. */
export const refundPolicyDecider: Decider<RefundPolicyState, PolicyCommand, PolicyEvent, RefundPolicyFacts> = {
  aggregateType: "RefundPolicy",
  commands: ["CreatePolicy", "UpdatePolicy", "DeprecatePolicy"],

  decide(command, state, facts) {
    const id = command.aggregate_id;
    switch (command.type) {
      case "CreatePolicy": {
        const { name, type, refund_period_days, max_progress_percent } = command.body;
        // A self-contradictory body is wrong whatever the state, so it is reported as a bad request first.
        const problem = inconsistency(type, { refund_period_days, max_progress_percent: max_progress_percent ?? null });
        if (problem) throw errors.invalidRequest(problem, { type, refund_period_days, max_progress_percent });
        if (state) throw errors.conflict(`policy ${id} already exists`);
        return [
          domainEvent("PolicyCreated", {
            policy_id: id,
            name,
            type,
            refund_period_days,
            // The key is left out, not set to undefined, so the encoded payload has no nil field.
            ...(max_progress_percent === undefined ? {} : { max_progress_percent }),
          }),
        ];
      }
      case "UpdatePolicy": {
        if (!state) throw errors.notFound(`policy ${id} does not exist`);
        if (state.status === PolicyStatus.Deprecated) throw errors.ruleViolated(`policy ${id} is deprecated and takes no updates`);
        const wanted = command.body.new_conditions;
        const next: Conditions = {
          refund_period_days: wanted.refund_period_days ?? state.refund_period_days,
          max_progress_percent: wanted.max_progress_percent ?? state.max_progress_percent,
        };
        const problem = inconsistency(state.type, next);
        if (problem) throw errors.ruleViolated(problem, { policy_id: id, type: state.type, new_conditions: wanted });
        // Like a profile update, the event names only what actually changed.
        const changed: typeof wanted = {};
        if (wanted.refund_period_days !== undefined && wanted.refund_period_days !== state.refund_period_days) {
          changed.refund_period_days = wanted.refund_period_days;
        }
        if (wanted.max_progress_percent !== undefined && wanted.max_progress_percent !== state.max_progress_percent) {
          changed.max_progress_percent = wanted.max_progress_percent;
        }
        if (Object.keys(changed).length === 0) return [];
        return [domainEvent("PolicyUpdated", { policy_id: id, new_conditions: changed })];
      }
      case "DeprecatePolicy": {
        if (!state) throw errors.notFound(`policy ${id} does not exist`);
        const replacement = command.body.replacement_policy_id ?? null;
        if (state.status === PolicyStatus.Deprecated) {
          // Again, as it was (or naming no replacement): a repeat. Naming another replacement would change
          // what it was deprecated with, which no event says: refused (was: ok, events [], nothing done).
          if (replacement === null || replacement === (state.replacement_policy_id ?? null)) return [];
          throw errors.ruleViolated(`policy ${id} is deprecated already, with replacement ${state.replacement_policy_id ?? "none"}`, {
            replacement_policy_id: state.replacement_policy_id ?? null,
          });
        }
        if (replacement !== null) {
          if (replacement === id) throw errors.ruleViolated(`policy ${id} cannot replace itself`, { replacement_policy_id: replacement });
          const found = required(facts.replacement, "replacement");
          if (found === null) {
            throw errors.ruleViolated(`replacement policy ${replacement} does not exist`, { replacement_policy_id: replacement });
          }
          if (found.status !== PolicyStatus.Active) {
            throw errors.ruleViolated(`replacement policy ${replacement} is deprecated`, { replacement_policy_id: replacement });
          }
        }
        return [domainEvent("PolicyDeprecated", { policy_id: id, name: state.name, replacement_policy_id: replacement })];
      }
    }
  },

  evolve(state, event: RecordedEvent<PolicyEvent>) {
    switch (event.event_type) {
      case "PolicyCreated": {
        const p = event.payload;
        return {
          policy_id: p.policy_id,
          name: p.name,
          type: p.type,
          refund_period_days: p.refund_period_days,
          max_progress_percent: p.max_progress_percent ?? null,
          status: PolicyStatus.Active,
          replacement_policy_id: null,
        };
      }
      case "PolicyUpdated": {
        const c = event.payload.new_conditions;
        return {
          ...state!,
          refund_period_days: c.refund_period_days ?? state!.refund_period_days,
          max_progress_percent: c.max_progress_percent ?? state!.max_progress_percent,
        };
      }
      case "PolicyDeprecated":
        return { ...state!, status: PolicyStatus.Deprecated, replacement_policy_id: event.payload.replacement_policy_id };
    }
  },
};

/** The GetPolicy view of a policy. */
export const policyView = (s: RefundPolicyState, version: number): QueryResult<"GetPolicy"> => ({ ...s, version });
