/**
 * Invariants of the five deciders over random command sequences (issue #10). Each run plays steps (a
 * command with the facts the runtime looked up, or the access expiry timer) against one aggregate the
 * way the command bus does — decide, number the events one by one from the aggregate's version, evolve —
 * and checks after every step:
 * - a decider throws nothing but a NerveError, and never touches its inputs;
 * - a missing aggregate is `not_found` for every command but the creating one, an existing one `conflict`;
 * - no event without a state change: no events leave the state as it was, events change it;
 * - every event is one its command declares, about this aggregate, in an envelope (with the next
 *   aggregate_version) the contract accepts unchanged, and survives MessagePack exactly;
 * - replaying the numbered history rebuilds the state, the state survives JSON (it is stored as a
 *   snapshot) and its query view, at that version, passes the contract;
 * - progress never goes down, and a completed course stays completed.
 * That the bus really numbers without gaps is the command bus's own (integration) test.
 * Order totals and fact lookups have properties of their own below.
 */
import fc from "fast-check";
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import {
  accessRecordDecider,
  courseDecider,
  expire,
  fold,
  orderDecider,
  recordAt,
  refundPolicyDecider,
  userDecider,
  views,
  type AccessRecordState,
  type Decider,
  type OrderFacts,
  type RecordedEvent,
} from "../../actors/index.js";
import {
  CommandDefinitions,
  decodeMsgPack,
  deriveAccessId,
  encodeMsgPack,
  EventContexts,
  EventSchemas,
  EventVersions,
  isNerveError,
  Payloads,
  QueryDefinitions,
  toTimestamp,
  type CommandType,
  type Context,
  type DomainEvent,
  type Money,
  type QueryType,
} from "../../contracts/index.js";
import { AGGREGATE_KEY, accessId, amount, id, name, record, validCommandBody } from "../support/arbitraries.js";
import { assertProperty, fuzzSummary } from "../support/fuzz.js";

fuzzSummary(import.meta.url);

const DAY = 86_400_000;
const START = Date.parse("2026-01-01T00:00:00.000Z");

/** One thing that happens to the aggregate: a command and the facts the runtime supplied, or the expiry timer. */
type Step =
  | { kind: "command"; type: CommandType; body: Record<string, unknown>; facts: Record<string, unknown>; advanceMs: number; expiresInMs?: number | null }
  | { kind: "expire"; advanceMs: number };

/** A context's aggregate under test, how to draw one run against it, and how many runs it gets (CI; share of FUZZ_RUNS). */
interface World {
  context: Context;
  decider: Decider<any, any, any, any>;
  view: QueryType;
  run: fc.Arbitrary<{ id: string; steps: Step[] }>;
  ciRuns: number;
  fuzzShare: number;
}

// Time moves on by nothing, a little, or a lot (past refund periods and expiries).
const advance = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3_600_000 }), fc.integer({ min: 0, max: 400 * DAY }));

/** A command step of `type`: its body, the facts the runtime supplies with it, and the time since the last step. */
function command(type: CommandType, body: fc.Arbitrary<object>, facts: fc.Arbitrary<object> = fc.constant({})): fc.Arbitrary<Step> {
  return record({ body, facts, advanceMs: advance }).map((s) => ({ kind: "command" as const, type, ...(s as { body: Record<string, unknown>; facts: Record<string, unknown>; advanceMs: number }) }));
}

// A valid body of any shape now and then, a small pool otherwise, so that no-ops and repeats happen.
const poolOr = <T extends CommandType>(type: T, pool: fc.Arbitrary<object>) => fc.oneof({ weight: 1, arbitrary: validCommandBody(type) as fc.Arbitrary<object> }, { weight: 3, arbitrary: pool });
const sometimesMissing = (facts: fc.Arbitrary<object>) => fc.oneof({ weight: 9, arbitrary: facts }, { weight: 1, arbitrary: fc.constant({}) });
// Up to 20 steps; most runs start by creating the aggregate, so that the commands after it find one.
const steps = (create: fc.Arbitrary<Step>, step: fc.Arbitrary<Step>) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.tuple(create, fc.array(step, { maxLength: 19 })).map(([first, rest]) => [first, ...rest]) },
    { weight: 1, arbitrary: fc.array(step, { minLength: 1, maxLength: 20 }) },
  );

const EMAILS = ["ada@example.com", "ADA@Example.com", "grace@example.org"];
const emailFacts = (self: string) => record({ emailOwner: fc.constantFrom(null, self, "someone-else") });

const usersWorld: World = {
  context: "users",
  decider: userDecider,
  view: "GetUser",
  ciRuns: 80,
  fuzzShare: 0.25,
  run: id().chain((self) => {
    const register = command("RegisterUser", poolOr("RegisterUser", record({ email: fc.constantFrom(...EMAILS), name: fc.constantFrom("Ada", " Ada ") })), emailFacts(self));
    return steps(
      register,
      fc.oneof(
        register,
        command(
          "UpdateUserProfile",
          poolOr("UpdateUserProfile", record({ profile_data: record({ display_name: fc.constantFrom("Ada", null), locale: fc.constantFrom("en-GB", null) }, { requiredKeys: [] }).filter((p) => Object.keys(p).length > 0) })),
        ),
        command("ChangeUserEmail", poolOr("ChangeUserEmail", record({ new_email: fc.constantFrom(...EMAILS) })), emailFacts(self)),
      ),
    ).map((s) => ({ id: self, steps: s }));
  }),
};

// Mostly bodies a policy type accepts, so that policies get created and changed.
const consistentPolicy = fc.oneof(
  record({ name: name(), type: fc.constant("standard"), refund_period_days: fc.integer({ min: 1, max: 365 }) }),
  record({ name: name(), type: fc.constant("conditional"), refund_period_days: fc.integer({ min: 1, max: 365 }), max_progress_percent: fc.integer({ min: 0, max: 100 }) }),
  record({ name: name(), type: fc.constant("no_refund"), refund_period_days: fc.constant(0) }),
);
const createPolicy = command("CreatePolicy", poolOr("CreatePolicy", consistentPolicy));
const policyStatus = fc.oneof({ weight: 1, arbitrary: fc.constant(null) }, { weight: 4, arbitrary: fc.constant({ status: "active" }) }, { weight: 1, arbitrary: fc.constant({ status: "deprecated" }) });

const policiesWorld: World = {
  context: "policies",
  decider: refundPolicyDecider,
  view: "GetPolicy",
  ciRuns: 150,
  fuzzShare: 0.4,
  run: id().chain((self) =>
    steps(
      createPolicy,
      fc.oneof(
        createPolicy,
        command("UpdatePolicy", validCommandBody("UpdatePolicy")),
        command(
          "DeprecatePolicy",
          poolOr("DeprecatePolicy", fc.constantFrom({}, { replacement_policy_id: null }, { replacement_policy_id: self }, { replacement_policy_id: "p-other" })),
          sometimesMissing(record({ replacement: policyStatus })),
        ),
      ),
    ).map((s) => ({ id: self, steps: s })),
  ),
};

const EUR = (amount: number): Money => ({ amount, currency: "EUR" });
const policyFacts = sometimesMissing(record({ policy: policyStatus }));
const createCourse = command("CreateCourse", validCommandBody("CreateCourse"), policyFacts);

const coursesWorld: World = {
  context: "courses",
  decider: courseDecider,
  view: "GetCourse",
  ciRuns: 150,
  fuzzShare: 0.4,
  run: id().chain((self) =>
    steps(
      createCourse,
      fc.oneof(
        createCourse,
        command(
          "UpdateCourse",
          poolOr("UpdateCourse", fc.oneof(record({ title: fc.constantFrom("T1", "T2") }), record({ description: fc.constantFrom("", "d") }), record({ price: fc.constantFrom(null, EUR(100)) }))),
        ),
        command("DeprecateCourse", fc.constant({})),
        command("ChangeCoursePolicy", poolOr("ChangeCoursePolicy", record({ new_policy_id: fc.constantFrom("p1", "p2") })), policyFacts),
      ),
    ).map((s) => ({ id: self, steps: s })),
  ),
};

const COURSES = ["c1", "c2", "c3"];
// Realistic prices here; the overflow edge of the total has a property of its own below.
const catalogEntry = fc.oneof(
  { weight: 15, arbitrary: record({ status: fc.constant("active"), price: record({ amount: fc.nat({ max: 100_000 }), currency: fc.oneof({ weight: 5, arbitrary: fc.constant("EUR") }, fc.constant("USD")) }) }) },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: record({ status: fc.constant("deprecated"), price: fc.constant(EUR(100)) }) },
  { weight: 1, arbitrary: fc.constant({ status: "active", price: null }) },
);
const placeOrder: fc.Arbitrary<Step> = record({
  body: poolOr("PlaceOrder", record({ user_id: fc.constantFrom("u1", "u2"), course_ids: fc.shuffledSubarray(COURSES, { minLength: 1 }) })),
  userExists: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  entries: fc.tuple(catalogEntry, catalogEntry, catalogEntry),
  held: fc.oneof({ weight: 4, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.subarray(COURSES) }),
  total: fc.oneof({ weight: 2, arbitrary: fc.constant("none" as const) }, { weight: 2, arbitrary: fc.constant("sum" as const) }, record({ amount: fc.nat({ max: 300_000 }), currency: fc.constantFrom("EUR", "USD") })),
  advanceMs: advance,
}).map(({ body, userExists, entries, held, total, advanceMs }): Step => {
  // Catalog entries by position, so that a drawn body of any ids gets facts too.
  const ids = (body as { course_ids: string[] }).course_ids;
  const courses = Object.fromEntries(ids.map((c, i) => [c, entries[i % entries.length]!]));
  const prices = Object.values(courses).map((c) => c?.price?.amount ?? 0);
  const totalAmount = total === "none" ? undefined : total === "sum" ? EUR(prices.reduce((a, b) => a + b, 0)) : total;
  const facts: OrderFacts = { userExists, courses: courses as OrderFacts["courses"], activeAccess: held };
  return { kind: "command", type: "PlaceOrder", body: { ...body, ...(totalAmount ? { total_amount: totalAmount } : {}) }, facts, advanceMs };
});
const refundPolicy = fc.oneof(
  fc.constant(null),
  { weight: 4, arbitrary: record({ type: fc.constant("standard" as const), refund_period_days: fc.integer({ min: 1, max: 365 }), max_progress_percent: fc.constant(null) }) },
  { weight: 2, arbitrary: record({ type: fc.constant("conditional" as const), refund_period_days: fc.integer({ min: 1, max: 365 }), max_progress_percent: fc.integer({ min: 0, max: 100 }) }) },
  fc.constant({ type: "no_refund" as const, refund_period_days: 0, max_progress_percent: null }),
);
const refundFacts = sometimesMissing(
  record({
    policies: fc.tuple(refundPolicy, refundPolicy, refundPolicy).map((p) => Object.fromEntries(COURSES.map((c, i) => [c, p[i]!]))),
    progress: fc.tuple(fc.nat({ max: 100 }), fc.nat({ max: 100 })).map(([a, b]) => ({ c1: a, c2: b })),
  }),
);

const ordersWorld: World = {
  context: "orders",
  decider: orderDecider,
  view: "GetOrder",
  ciRuns: 200,
  fuzzShare: 1,
  run: record({
    id: id(),
    steps: steps(
      placeOrder,
      fc.oneof(
        placeOrder,
        command("MarkOrderPaid", poolOr("MarkOrderPaid", record({ payment_id: fc.constantFrom("pay-1", "pay-2") }))),
        command("RefundOrder", validCommandBody("RefundOrder"), refundFacts),
        command("CancelOrder", fc.constant({})),
      ),
    ),
  }),
};

const accessWorld: World = {
  context: "access",
  decider: accessRecordDecider,
  view: "GetAccess",
  ciRuns: 200,
  fuzzShare: 0.5,
  run: record({ user: id(), course: id(), other: fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: accessId() }) }).chain(({ user, course, other }) => {
    // The order a grant names, as the runtime finds it: mostly a paid order of this learner for this course.
    const paidOrder = { user_id: user, course_ids: [course], status: "paid" };
    const orderFact = fc.oneof(
      { weight: 8, arbitrary: fc.constant(paidOrder) },
      { weight: 1, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.constantFrom("placed", "cancelled", "refunded").map((status) => ({ ...paidOrder, status })) },
    );
    const grant = record({
      body: fc.oneof(
        { weight: 4, arbitrary: fc.constant({ user_id: user, course_id: course }) },
        // Paid by one of two orders: the same course bought again, in the same or another order.
        { weight: 3, arbitrary: fc.constantFrom("o-1", "o-2").map((order_id) => ({ user_id: user, course_id: course, order_id })) },
        { weight: 1, arbitrary: validCommandBody("GrantCourseAccess") },
      ),
      order: orderFact,
      // undefined: no expires_at; null: expires_at null; a number: that long after now (0 or less is refused)
      expiresInMs: fc.option(fc.option(fc.integer({ min: -DAY, max: 60 * DAY }), { nil: null }), { nil: undefined }),
      advanceMs: advance,
    }).map(({ body, order, expiresInMs, advanceMs }): Step => ({ kind: "command", type: "GrantCourseAccess", body, facts: { order }, advanceMs, expiresInMs }));
    const progress = command("UpdateProgress", poolOr("UpdateProgress", fc.constantFrom(10, 50, 99, 100).map((p) => ({ progress: p }))));
    return steps(
      grant,
      fc.oneof(
        grant,
        command("RevokeCourseAccess", validCommandBody("RevokeCourseAccess")),
        progress,
        progress,
        advance.map((advanceMs): Step => ({ kind: "expire", advanceMs })),
      ),
    ).map((s) => ({ id: other ?? deriveAccessId(user, course), steps: s }));
  }),
};

/** The command of a step at `now`; a grant's expiry is placed relative to `now`. */
function commandOf(step: Extract<Step, { kind: "command" }>, aggregateId: string, now: number) {
  const body = { ...step.body };
  if (step.expiresInMs !== undefined) body.expires_at = step.expiresInMs === null ? null : toTimestamp(new Date(now + step.expiresInMs));
  return { type: step.type, aggregate_id: aggregateId, body, now: toTimestamp(new Date(now)) };
}

type Observer = (before: any, after: any, events: DomainEvent[]) => void;

// Facts are keyed by course id, and "constructor" is a valid id: vitest's toStrictEqual compares an own
// `constructor` property by identity, so the comparison is node's.
function expectUntouched(inputs: unknown, copy: unknown): void {
  expect(isDeepStrictEqual(inputs, copy), `decide changed its inputs: ${JSON.stringify(inputs)}`).toBe(true);
}

/** Plays a run the way the command bus does, checking every invariant of the file header after each step. */
function play(world: World, aggregateId: string, run: Step[], observe?: Observer): void {
  const { decider } = world;
  let state: unknown = null;
  let version = 0;
  let clock = START;
  const history: RecordedEvent[] = [];
  for (const step of run) {
    clock += step.advanceMs;
    const now = toTimestamp(new Date(clock));
    const cmd = step.kind === "command" ? commandOf(step, aggregateId, clock) : undefined;
    const inputs = structuredClone({ state, cmd, facts: step.kind === "command" ? step.facts : undefined });
    let events: DomainEvent[];
    try {
      events = cmd ? decider.decide(cmd, state, step.kind === "command" ? step.facts : {}) : expire(state as AccessRecordState | null, now);
    } catch (err) {
      if (!isNerveError(err)) throw new Error(`${cmd?.type} threw something other than a NerveError: ${String(err)}`, { cause: err });
      expectUntouched({ state, cmd, facts: step.kind === "command" ? step.facts : undefined }, inputs);
      if (cmd && state === null && !CommandDefinitions[cmd.type].creates) expect(err.code, err.message).toBe("not_found");
      if (cmd && state !== null && CommandDefinitions[cmd.type].creates && cmd.type !== "GrantCourseAccess") {
        expect(["conflict", "invalid_request"], err.message).toContain(err.code);
      }
      continue;
    }
    expectUntouched({ state, cmd, facts: step.kind === "command" ? step.facts : undefined }, inputs);
    if (cmd && state === null) expect(CommandDefinitions[cmd.type].creates, `${cmd.type} succeeded on a missing aggregate`).toBe(true);

    const declared: readonly string[] = cmd ? CommandDefinitions[cmd.type].emits : ["AccessExpired"];
    events.forEach((e, i) => {
      expect(declared, `${cmd?.type ?? "expire"} emitted ${e.event_type}`).toContain(e.event_type);
      expect(EventContexts[e.event_type]).toBe(world.context);
      expect((e.payload as Record<string, unknown>)[AGGREGATE_KEY[world.context]], "an event about another aggregate").toBe(aggregateId);
      const envelope = {
        event_id: "0192f0c5-7b1e-7c3a-8f2d-1a2b3c4d5e6f",
        event_type: e.event_type,
        event_version: EventVersions[e.event_type],
        occurred_on: now,
        aggregate_type: decider.aggregateType,
        aggregate_id: aggregateId,
        aggregate_version: version + i + 1,
        correlation_id: "corr",
        causation_id: null,
        payload: e.payload,
      };
      const parsed = EventSchemas[e.event_type].safeParse(envelope);
      expect(parsed.error?.issues ?? [], `${e.event_type} envelope`).toEqual([]);
      expect(parsed.data, `${e.event_type}: the schema changed the payload`).toStrictEqual(envelope);
      expect(decodeMsgPack(encodeMsgPack(e.payload)), `${e.event_type} payload over MessagePack`).toStrictEqual({ ok: true, value: e.payload });
    });

    // No events leave the state as it was (decide did not touch it, checked above); events must change it.
    const recorded = recordAt(events, now);
    const next = fold(decider, recorded, state);
    if (events.length > 0) {
      expect(isDeepStrictEqual(next, state), `${cmd?.type ?? "expire"} emitted ${events.map((e) => e.event_type).join(", ")} without changing the state`).toBe(false);
    }
    observe?.(state, next, events);

    history.push(...recorded);
    version += events.length;
    expect(fold(decider, history), "replaying the history rebuilds the state").toStrictEqual(next);
    expect(JSON.parse(JSON.stringify(next)), "the state survives its JSON snapshot").toStrictEqual(next);
    if (next !== null) {
      const view = (views[world.context] as (s: unknown, v: number) => unknown)(next, version);
      const result = QueryDefinitions[world.view].result.safeParse(view);
      expect(result.error?.issues ?? [], `${world.view} view`).toEqual([]);
    }
    state = next;
  }
}

/** Progress never goes down, rises with every ProgressUpdated, and a completed course stays completed. */
const progressNeverGoesDown: Observer = (before: AccessRecordState | null, after: AccessRecordState | null, events) => {
  if (before === null || after === null) return;
  expect(after.progress, "progress went down").toBeGreaterThanOrEqual(before.progress);
  if (before.completed) expect(after.completed, "a completed course became incomplete").toBe(true);
  for (const e of events) {
    if (e.event_type === "ProgressUpdated") expect(e.payload.progress).toBeGreaterThan(before.progress);
    if (e.event_type === "CourseCompleted") expect(after.progress).toBe(100);
  }
};

describe("decider invariants over random command sequences", () => {
  it.each([usersWorld, policiesWorld, coursesWorld, ordersWorld, accessWorld].map((w) => [w.context, w] as const))("%s", (context, world) => {
    const observe = context === "access" ? progressNeverGoesDown : undefined;
    assertProperty(fc.property(world.run, ({ id: aggregateId, steps: run }) => play(world, aggregateId, run, observe)), world.ciRuns, world.fuzzShare);
  });
});

describe("an order's total is the sum of its courses' catalog prices", () => {
  const order = record({
    courses: fc.uniqueArray(fc.tuple(id(), amount()), { minLength: 1, maxLength: 50, selector: ([c]) => c }),
    currency: fc.constantFrom("EUR", "JPY", "XTS"),
    given: fc.oneof(fc.constant("none" as const), fc.constant("sum" as const), record({ amount: amount(), currency: fc.constantFrom("EUR", "USD") })),
  });

  it("without total_amount the order carries the exact sum; a total_amount that differs is rule_violated", () => {
    assertProperty(
      fc.property(order, ({ courses, currency, given }) => {
        const sum = courses.reduce((s, [, amount]) => s + BigInt(amount), 0n);
        const facts: OrderFacts = { userExists: true, courses: Object.fromEntries(courses.map(([c, amount]) => [c, { status: "active", price: { amount, currency } }])), activeAccess: [] };
        const safe = sum <= BigInt(Number.MAX_SAFE_INTEGER);
        const total = given === "none" ? undefined : given === "sum" ? (safe ? { amount: Number(sum), currency } : undefined) : given;
        const body = { user_id: "u1", course_ids: courses.map(([c]) => c), ...(total ? { total_amount: total } : {}) };
        const decide = () => orderDecider.decide({ type: "PlaceOrder", aggregate_id: "o1", body, now: toTimestamp(new Date(START)) }, null, facts);
        const differs = total !== undefined && (BigInt(total.amount) !== sum || total.currency !== currency);
        if (differs || !safe) {
          // A sum beyond the largest safe integer cannot be carried as money at all.
          let caught: unknown;
          try {
            decide();
          } catch (err) {
            caught = err;
          }
          expect(isNerveError(caught), `no refusal: total ${sum} (given ${JSON.stringify(total)})`).toBe(true);
          if (differs && safe) expect((caught as { code: string }).code).toBe("rule_violated");
          return;
        }
        const [placed, ...rest] = decide();
        expect(rest).toEqual([]);
        expect(placed?.event_type).toBe("OrderPlaced");
        const payload = placed!.payload as { total_amount: Money };
        expect(payload.total_amount).toStrictEqual({ amount: Number(sum), currency });
        expect(Payloads.OrderPlaced.safeParse(payload).success).toBe(true);
      }),
      200,
    );
  });
});

describe("a fact the runtime could not find counts as missing, whatever the course id", () => {
  // Ids that are also names on Object.prototype are valid ids, and lookups must not find them there.
  const courseId = fc.oneof(fc.constantFrom("toString", "constructor", "__proto__", "valueOf", "hasOwnProperty"), id());
  const now = toTimestamp(new Date(START));

  it("PlaceOrder: a course without a catalog entry is does_not_exist", () => {
    assertProperty(
      fc.property(courseId, fc.boolean(), (course, asNull) => {
        const facts: OrderFacts = { userExists: true, courses: asNull ? Object.fromEntries([[course, null]]) : {}, activeAccess: [] };
        let caught: unknown;
        try {
          orderDecider.decide({ type: "PlaceOrder", aggregate_id: "o1", body: { user_id: "u1", course_ids: [course] }, now }, null, facts);
        } catch (err) {
          caught = err;
        }
        expect(isNerveError(caught, "rule_violated"), String(caught)).toBe(true);
        expect((caught as { details: unknown }).details).toEqual({ courses: [{ course_id: course, reason: "does_not_exist" }] });
      }),
      100,
      0.1,
    );
  });

  it("RefundOrder: a course whose policy is unknown is policy_unknown; absent progress counts as 0", () => {
    assertProperty(
      fc.property(courseId, fc.boolean(), (course, asNull) => {
        const state = fold(orderDecider, [
          { event_type: "OrderPlaced", payload: { order_id: "o1", user_id: "u1", course_ids: [course], total_amount: EUR(100) }, occurred_on: now },
          { event_type: "OrderPaid", payload: { order_id: "o1", user_id: "u1", course_ids: [course], payment_id: "pay-1" }, occurred_on: now },
        ]);
        const facts: OrderFacts = { policies: asNull ? Object.fromEntries([[course, null]]) : {}, progress: {} };
        let caught: unknown;
        try {
          orderDecider.decide({ type: "RefundOrder", aggregate_id: "o1", body: { refund_reason: "r" }, now }, state, facts);
        } catch (err) {
          caught = err;
        }
        expect(isNerveError(caught, "rule_violated"), `refunded although the policy of ${course} is unknown`).toBe(true);
        expect((caught as { details: unknown }).details).toEqual({ courses: [{ course_id: course, reason: "policy_unknown" }] });
        // A conditional policy with max 0 allows the refund exactly when the absent progress counts as 0.
        const strict = { type: "conditional" as const, refund_period_days: 14, max_progress_percent: 0 };
        const allowed = orderDecider.decide(
          { type: "RefundOrder", aggregate_id: "o1", body: { refund_reason: "r" }, now },
          state,
          { policies: Object.fromEntries([[course, strict]]), progress: {} },
        );
        expect(allowed.map((e) => e.event_type)).toEqual(["OrderRefunded"]);
      }),
      100,
      0.1,
    );
  });
});
