/** Hosting of the AccessRecord aggregate, with its expiry as a durable timer. */
import { accessRecordDecider, accessView, expire, nextDeadline, type AccessRecordFacts, type AccessRecordState } from "../../actors/access/index.js";
import type { AggregateModule } from "../runtime/index.js";
import type { OrderState } from "../../actors/orders/index.js";
import { timerOp, type TimerKind } from "../timers/index.js";

/** Expiry of access records: due at `expires_at` of an active record. */
export const accessExpiryTimer: TimerKind = {
  context: "access",
  aggregateType: "AccessRecord",
  kind: "expire",
  fire: (state, now) => expire(state as AccessRecordState | null, now),
  deadline: (state) => nextDeadline(state as AccessRecordState | null),
};

/** The Access context. */
export const accessModule: AggregateModule<AccessRecordState, AccessRecordFacts> = {
  context: "access",
  aggregateType: "AccessRecord",
  decider: accessRecordDecider,
  // A grant naming an order reads it: the record names it as what paid for the access.
  async facts(command, _state, lookups): Promise<AccessRecordFacts> {
    if (command.type !== "GrantCourseAccess" || !command.body.order_id) return {};
    const order = (await lookups.readState<OrderState>("Order", command.body.order_id)).state;
    return { order: order ? { user_id: order.user_id, course_ids: order.course_ids, status: order.status } : null };
  },
  extra: (aggregateId, events, state) => (events.length > 0 ? [timerOp(accessExpiryTimer, aggregateId, nextDeadline(state))] : []),
  view: (state, version) => accessView(state, version),
};
