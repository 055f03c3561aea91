/** Hosting of the Order aggregate: catalog prices, the buyer, held access, policies and progress at decision time. */
import { deriveAccessId } from "../../contracts/index.js";
import { holdsAccess, type AccessRecordState } from "../../actors/access/index.js";
import type { CourseState } from "../../actors/courses/index.js";
import { orderDecider, orderView, type OrderFacts, type OrderState } from "../../actors/orders/index.js";
import type { RefundPolicyState } from "../../actors/policies/index.js";
import type { UserState } from "../../actors/users/index.js";
import type { AggregateModule, Lookups } from "../runtime/index.js";

async function coursesOf(lookups: Lookups, ids: string[]) {
  return Promise.all(ids.map(async (id) => [id, (await lookups.readState<CourseState>("Course", id)).state] as const));
}

async function accessOf(lookups: Lookups, userId: string, courseIds: string[]) {
  return Promise.all(courseIds.map(async (id) => [id, (await lookups.readState<AccessRecordState>("AccessRecord", deriveAccessId(userId, id))).state] as const));
}

/** The Orders context. */
export const ordersModule: AggregateModule<OrderState, OrderFacts> = {
  context: "orders",
  aggregateType: "Order",
  decider: orderDecider,
  async facts(command, state, lookups): Promise<OrderFacts> {
    if (command.type === "PlaceOrder") {
      const { user_id, course_ids } = command.body;
      const [user, courses, access] = await Promise.all([
        lookups.readState<UserState>("User", user_id),
        coursesOf(lookups, course_ids),
        accessOf(lookups, user_id, course_ids),
      ]);
      return {
        userExists: user.state !== null,
        courses: Object.fromEntries(courses.map(([id, c]) => [id, c ? { status: c.status, price: c.price } : null])),
        // Held at the command's time, for good: a record past its expires_at, its timer not fired yet, is
        // over (was: held until the timer fired); one that ends later (a trial) may be bought, and the
        // grant of the order's payment makes it open-ended (was: refused until the trial had ended).
        activeAccess: access.filter(([, a]) => holdsAccess(a, command.now) && a!.expires_at === null).map(([id]) => id),
      };
    }
    if (command.type === "RefundOrder" && state) {
      const [courses, access] = await Promise.all([coursesOf(lookups, state.course_ids), accessOf(lookups, state.user_id, state.course_ids)]);
      const policies = await Promise.all(
        courses.map(async ([id, c]) => {
          const p = c ? (await lookups.readState<RefundPolicyState>("RefundPolicy", c.policy_id)).state : null;
          return [id, p ? { type: p.type, refund_period_days: p.refund_period_days, max_progress_percent: p.max_progress_percent } : null] as const;
        }),
      );
      return { policies: Object.fromEntries(policies), progress: Object.fromEntries(access.map(([id, a]) => [id, a?.progress ?? 0])) };
    }
    return {};
  },
  view: (state, version) => orderView(state, version),
};
