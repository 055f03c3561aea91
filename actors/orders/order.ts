/** The Order aggregate: placing, paying, cancelling and refunding a purchase of courses (CONTRACT.md §2–§3). */
import { domainEvent, errors, type Money, type PolicyType, type QueryResult } from "../../contracts/index.js";
import type { Decider, RecordedEvent } from "../decider.js";
import { required } from "../facts.js";

/** An order's lifecycle status: placed → paid → refunded, or placed → cancelled. */
export const OrderStatus = { Placed: "placed", Paid: "paid", Refunded: "refunded", Cancelled: "cancelled" } as const;
/** An order's lifecycle status. */
export type OrderStatus = (typeof OrderStatus)[keyof typeof OrderStatus];

/** An order's state; `paid_at` is when OrderPaid happened, the start of every refund period. */
export type OrderState = {
  order_id: string;
  user_id: string;
  course_ids: string[];
  total_amount: Money;
  status: OrderStatus;
  payment_id: string | null;
  paid_at: string | null;
};

/** A course as the catalog shows it when an order is placed. */
export type CatalogCourseFact = { status: "active" | "deprecated"; price: Money | null };

/** The refund policy a course follows at the moment of a refund. */
export type RefundPolicyFact = { type: PolicyType; refund_period_days: number; max_progress_percent: number | null };

/**
 * Facts the runtime supplies; MarkOrderPaid and CancelOrder need none.
 * - PlaceOrder needs `userExists` (is `body.user_id` a registered user), `courses` (each ordered
 *   course's catalog entry, keyed by course id; an absent key or `null` means no such course) and
 *   `activeAccess` (ids of courses the user holds active access to; ids outside the order are ignored).
 * - RefundOrder needs `policies` (the policy each course of the order follows now, keyed by course id;
 *   absent or `null` means it cannot be found) and `progress` (the learner's progress per course,
 *   keyed by course id; an absent key counts as 0, i.e. no access record).
 */
export type OrderFacts = {
  userExists?: boolean;
  courses?: Record<string, CatalogCourseFact | null>;
  activeAccess?: string[];
  policies?: Record<string, RefundPolicyFact | null>;
  progress?: Record<string, number>;
};

/** Why one course stands in the way of an order or a refund. */
export type CourseRefusal = { course_id: string; reason: string; [detail: string]: unknown };

type OrderCommand = "PlaceOrder" | "MarkOrderPaid" | "RefundOrder" | "CancelOrder";
type OrderEvent = "OrderPlaced" | "OrderPaid" | "OrderRefunded" | "OrderCancelled";

const DAY_MS = 86_400_000;

/** Throws one `rule_violated` naming every refused course, so the caller can fix them all at once. */
function refuse(what: string, refusals: CourseRefusal[]): never {
  const list = refusals.map((r) => `course ${r.course_id}: ${r.reason.replaceAll("_", " ")}`).join("; ");
  throw errors.ruleViolated(`${what}: ${list}`, { courses: refusals });
}

/** Checks the catalog side of PlaceOrder and returns the total the order must carry. */
function priceOrder(userId: string, courseIds: string[], facts: OrderFacts): Money {
  if (!required(facts.userExists, "userExists")) throw errors.ruleViolated(`user ${userId} does not exist`, { user_id: userId });
  const catalog = required(facts.courses, "courses");
  const held = new Set(required(facts.activeAccess, "activeAccess"));
  const refusals: CourseRefusal[] = [];
  const prices: Money[] = [];
  for (const courseId of courseIds) {
    const course = own(catalog, courseId) ?? null;
    if (course === null) refusals.push({ course_id: courseId, reason: "does_not_exist" });
    else if (course.status !== "active") refusals.push({ course_id: courseId, reason: "deprecated" });
    else if (course.price === null) refusals.push({ course_id: courseId, reason: "not_for_sale" });
    else if (held.has(courseId)) refusals.push({ course_id: courseId, reason: "access_already_held" });
    else prices.push(course.price);
  }
  if (refusals.length > 0) refuse("the order cannot be placed", refusals);
  const currencies = [...new Set(prices.map((p) => p.currency))];
  if (currencies.length > 1) throw errors.ruleViolated(`an order is paid in one currency, not ${currencies.join(", ")}`, { currencies });
  const amount = prices.reduce((sum, p) => sum + p.amount, 0);
  // Past 2^53 the sum is no longer exact, and the contract's money refuses it: no such order.
  if (!Number.isSafeInteger(amount)) throw errors.ruleViolated("the order's total is larger than any amount money can hold", { courses: courseIds });
  return { amount, currency: currencies[0]! };
}

/** A fact keyed by course id: only the object's own keys (a course may be called `toString`). */
function own<T>(facts: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(facts, key) ? facts[key] : undefined;
}

/** Says why a policy refuses a refund now, or returns null when it allows it. */
function refundRefusal(courseId: string, policy: RefundPolicyFact | null, paidAt: string, now: string, progress: number): CourseRefusal | null {
  if (policy === null) return { course_id: courseId, reason: "policy_unknown" };
  if (policy.type === "no_refund") return { course_id: courseId, reason: "no_refund" };
  const deadline = Date.parse(paidAt) + policy.refund_period_days * DAY_MS;
  // The last instant of the period still counts: now ≤ paid_at + days.
  if (Date.parse(now) > deadline) {
    return { course_id: courseId, reason: "refund_period_over", refund_period_days: policy.refund_period_days, ended_at: new Date(deadline).toISOString() };
  }
  if (policy.type === "conditional" && policy.max_progress_percent !== null && progress > policy.max_progress_percent) {
    return { course_id: courseId, reason: "progress_too_high", progress, max_progress_percent: policy.max_progress_percent };
  }
  return null;
}

/** The Order decider. */
export const orderDecider: Decider<OrderState, OrderCommand, OrderEvent, OrderFacts> = {
  aggregateType: "Order",
  commands: ["PlaceOrder", "MarkOrderPaid", "RefundOrder", "CancelOrder"],

  decide(command, state, facts) {
    const id = command.aggregate_id;
    switch (command.type) {
      case "PlaceOrder": {
        if (state) throw errors.conflict(`order ${id} already exists`);
        const { user_id, course_ids, total_amount } = command.body;
        const expected = priceOrder(user_id, course_ids, facts);
        if (total_amount && (total_amount.amount !== expected.amount || total_amount.currency !== expected.currency)) {
          throw errors.ruleViolated("total_amount differs from the sum of the catalog prices", { expected, given: total_amount });
        }
        return [domainEvent("OrderPlaced", { order_id: id, user_id, course_ids: [...course_ids], total_amount: expected })];
      }
      case "MarkOrderPaid": {
        if (!state) throw errors.notFound(`order ${id} does not exist`);
        const { payment_id } = command.body;
        // A repeated notice of the payment that paid it is harmless, also after a refund (a webhook
        // redelivered late); a second, different payment is not.
        if (state.status === OrderStatus.Refunded && state.payment_id === payment_id) return [];
        if (state.status === OrderStatus.Paid) {
          if (state.payment_id === payment_id) return [];
          throw errors.conflict(`order ${id} is already paid by another payment`, { payment_id: state.payment_id });
        }
        if (state.status !== OrderStatus.Placed) throw errors.ruleViolated(`order ${id} is ${state.status} and cannot be paid`, { status: state.status });
        return [domainEvent("OrderPaid", { order_id: id, user_id: state.user_id, course_ids: [...state.course_ids], payment_id })];
      }
      case "CancelOrder": {
        if (!state) throw errors.notFound(`order ${id} does not exist`);
        if (state.status === OrderStatus.Cancelled) return [];
        if (state.status !== OrderStatus.Placed) throw errors.ruleViolated(`order ${id} is ${state.status} and cannot be cancelled`, { status: state.status });
        return [domainEvent("OrderCancelled", { order_id: id, user_id: state.user_id })];
      }
      case "RefundOrder": {
        if (!state) throw errors.notFound(`order ${id} does not exist`);
        if (state.status === OrderStatus.Refunded) return [];
        if (state.status !== OrderStatus.Paid || state.paid_at === null) {
          throw errors.ruleViolated(`order ${id} is ${state.status}, not paid, and cannot be refunded`, { status: state.status });
        }
        const policies = required(facts.policies, "policies");
        const progress = required(facts.progress, "progress");
        const refusals: CourseRefusal[] = [];
        for (const courseId of state.course_ids) {
          const refusal = refundRefusal(courseId, own(policies, courseId) ?? null, state.paid_at, command.now, own(progress, courseId) ?? 0);
          if (refusal) refusals.push(refusal);
        }
        if (refusals.length > 0) refuse(`order ${id} cannot be refunded`, refusals);
        return [
          domainEvent("OrderRefunded", { order_id: id, user_id: state.user_id, course_ids: [...state.course_ids], refund_reason: command.body.refund_reason }),
        ];
      }
    }
  },

  evolve(state, event: RecordedEvent<OrderEvent>) {
    switch (event.event_type) {
      case "OrderPlaced": {
        const p = event.payload;
        return {
          order_id: p.order_id,
          user_id: p.user_id,
          course_ids: [...p.course_ids],
          total_amount: { ...p.total_amount },
          status: OrderStatus.Placed,
          payment_id: null,
          paid_at: null,
        };
      }
      case "OrderPaid":
        return { ...state!, status: OrderStatus.Paid, payment_id: event.payload.payment_id, paid_at: event.occurred_on };
      case "OrderCancelled":
        return { ...state!, status: OrderStatus.Cancelled };
      case "OrderRefunded":
        return { ...state!, status: OrderStatus.Refunded };
    }
  },
};

/** The GetOrder view of an order (`paid_at` stays internal: the contract does not publish it). */
export const orderView = (s: OrderState, version: number): QueryResult<"GetOrder"> => ({
  order_id: s.order_id,
  user_id: s.user_id,
  course_ids: [...s.course_ids],
  total_amount: { ...s.total_amount },
  status: s.status,
  payment_id: s.payment_id,
  version,
});
