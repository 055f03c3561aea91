import { describe, expect, it } from "vitest";
import {
  commandTypesOf,
  Contexts,
  CONTEXTS,
  deriveAccessId,
  domainEvent,
  eventTypesOf,
  Payloads,
  QueryDefinitions,
  type Context,
  type DomainEvent,
} from "../../contracts/index.js";
import { deciders, views, type RecordedEvent } from "../../actors/index.js";

const at = (day: number) => `2026-01-${String(day).padStart(2, "0")}T12:00:00.000Z`;
const acc = { access_id: deriveAccessId("u1", "c1"), user_id: "u1", course_id: "c1" };
const money = { amount: 4900, currency: "EUR" };

/** Lifecycles per context that together use every one of its event types. */
const lifecycles: Record<Context, DomainEvent[][]> = {
  users: [[
    domainEvent("UserRegistered", { user_id: "u1", email: "ann@example.com", name: "Ann" }),
    domainEvent("UserProfileUpdated", { user_id: "u1", profile_data: { display_name: "Annie", timezone: "Europe/Paris", avatar_url: "https://x.example/a.png" } }),
    domainEvent("UserEmailChanged", { user_id: "u1", old_email: "ann@example.com", new_email: "ann@new.example" }),
  ]],
  policies: [[
    domainEvent("PolicyCreated", { policy_id: "p1", name: "Try it", type: "conditional", refund_period_days: 30, max_progress_percent: 20 }),
    domainEvent("PolicyUpdated", { policy_id: "p1", new_conditions: { refund_period_days: 14 } }),
    domainEvent("PolicyDeprecated", { policy_id: "p1", name: "Try it", replacement_policy_id: "p2" }),
  ]],
  courses: [[
    domainEvent("CourseCreated", { course_id: "c1", title: "TypeScript", instructor_id: "i1", policy_id: "p1" }),
    domainEvent("CourseUpdated", { course_id: "c1", title: "TypeScript", description: "Types", price: money }),
    domainEvent("CoursePolicyChanged", { course_id: "c1", old_policy_id: "p1", new_policy_id: "p2" }),
    domainEvent("CourseDeprecated", { course_id: "c1", title: "TypeScript" }),
  ]],
  orders: [
    [
      domainEvent("OrderPlaced", { order_id: "o1", user_id: "u1", course_ids: ["c1"], total_amount: money }),
      domainEvent("OrderPaid", { order_id: "o1", user_id: "u1", course_ids: ["c1"], payment_id: "pay_1" }),
      domainEvent("OrderRefunded", { order_id: "o1", user_id: "u1", course_ids: ["c1"], refund_reason: "changed my mind" }),
    ],
    [
      domainEvent("OrderPlaced", { order_id: "o2", user_id: "u1", course_ids: ["c1", "c2"], total_amount: money }),
      domainEvent("OrderCancelled", { order_id: "o2", user_id: "u1" }),
    ],
  ],
  access: [[
    domainEvent("CourseAccessGranted", { ...acc, expires_at: at(20), order_id: "o1" }),
    domainEvent("ProgressUpdated", { ...acc, progress: 100 }),
    domainEvent("CourseCompleted", acc),
    domainEvent("AccessExpired", { ...acc, expired_at: at(20) }),
    domainEvent("CourseAccessGranted", { ...acc, expires_at: null, order_id: null }),
    domainEvent("AccessRevoked", { ...acc, reason: "order_refunded" }),
  ]],
};

const results = {
  users: QueryDefinitions.GetUser.result,
  policies: QueryDefinitions.GetPolicy.result,
  courses: QueryDefinitions.GetCourse.result,
  orders: QueryDefinitions.GetOrder.result,
  access: QueryDefinitions.GetAccess.result,
} as const;

describe.each(CONTEXTS)("the %s decider", (context) => {
  const decider = deciders[context] as { aggregateType: string; commands: readonly string[]; evolve(s: unknown, e: RecordedEvent): unknown };
  const view = views[context] as (s: unknown, version: number) => unknown;

  it("owns its context's aggregate type and every one of its commands", () => {
    expect(decider.aggregateType).toBe(Contexts[context].aggregate);
    expect([...decider.commands].sort()).toEqual(commandTypesOf(context).sort());
  });

  it("has a sample lifecycle that is valid and covers every event type of the context", () => {
    const events = lifecycles[context].flat();
    for (const e of events) expect(Payloads[e.event_type].safeParse(e.payload).success, e.event_type).toBe(true);
    expect(new Set(events.map((e) => e.event_type))).toEqual(new Set(eventTypesOf(context)));
  });

  it("evolves into a state whose view passes the contract's query result schema after every event", () => {
    for (const lifecycle of lifecycles[context]) {
      let state: unknown = null;
      lifecycle.forEach((e, i) => {
        state = decider.evolve(state, { ...e, occurred_on: at(i + 1) });
        const parsed = results[context].safeParse(view(state, i + 1));
        expect(parsed.success, `${e.event_type}: ${parsed.error?.message}`).toBe(true);
        expect(JSON.parse(JSON.stringify(state))).toStrictEqual(state);
      });
    }
  });
});
