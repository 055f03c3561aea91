/** Hosting of the RefundPolicy aggregate: a replacement's status comes from that policy's own actor. */
import { refundPolicyDecider, policyView, type RefundPolicyFacts, type RefundPolicyState } from "../../actors/policies/index.js";
import type { AggregateModule } from "../runtime/index.js";

/** The Policies context. */
export const policiesModule: AggregateModule<RefundPolicyState, RefundPolicyFacts> = {
  context: "policies",
  aggregateType: "RefundPolicy",
  decider: refundPolicyDecider,
  async facts(command, _state, lookups) {
    if (command.type !== "DeprecatePolicy" || !command.body.replacement_policy_id) return {};
    const { state } = await lookups.readState<RefundPolicyState>("RefundPolicy", command.body.replacement_policy_id);
    return { replacement: state ? { status: state.status } : null };
  },
  view: (state, version) => policyView(state, version),
};
