/** access-grants and policy-sync against a real SQLite file and a fake command bus. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Consumers, deriveAccessId } from "../../contracts/index.js";
import { EventHandler, PoisonEventError } from "../../src/consumers/index.js";
import { MOVES_AT_ONCE, createSubscribers, idempotencyKeyOf } from "../../src/projections/index.js";
import { envelope, nerveError, openReadModels, type ReadModels } from "./fixtures.js";
import { captureLog } from "../support/index.js";

let m: ReadModels;
beforeEach(async () => {
  m = await openReadModels({ defaultPolicyId: "pol-default" });
});
afterEach(async () => {
  await m.close();
});

describe("every durable consumer Nerve runs", () => {
  it("is named in Consumers, from which NATS permissions and the external consumers' reserved names are made", () => {
    const names = createSubscribers(m.deps).map((s) => s.name as string);
    expect(names.filter((n) => !(Object.values(Consumers) as string[]).includes(n))).toEqual([]);
  });
});

describe("access-grants", () => {
  const paid = () => envelope("OrderPaid", "o1", 2, { order_id: "o1", user_id: "u1", course_ids: ["c1", "c2"], payment_id: "pay" }, { correlation_id: "checkout" });

  it("grants access per course of a paid order, keyed and traced by the event", async () => {
    const e = paid();
    expect(await m.handle("access-grants", e)).toEqual(["handled"]);
    expect(m.bus.calls).toEqual(
      ["c1", "c2"].map((c) => ({
        context: "access",
        type: "GrantCourseAccess",
        aggregateId: deriveAccessId("u1", c),
        // The paying order is named (GrantCourseAccess order_id → CourseAccessGranted version 2).
        body: { user_id: "u1", course_id: c, order_id: "o1" },
        idempotencyKey: `${e.event_id}:${c}`,
        correlationId: "checkout",
        causationId: e.event_id,
      })),
    );
    expect(await m.handle("access-grants", e)).toEqual(["duplicate"]);
    expect(m.bus.calls).toHaveLength(2);
  });

  it("revokes access per course of a refunded order with the reason order_refunded", async () => {
    await m.handle("access-grants", envelope("OrderRefunded", "o1", 3, { order_id: "o1", user_id: "u1", course_ids: ["c1"], refund_reason: "meh" }));
    expect(m.bus.calls).toEqual([expect.objectContaining({ type: "RevokeCourseAccess", aggregateId: deriveAccessId("u1", "c1"), body: { reason: "order_refunded" } })]);
  });

  it("revokes on a refund only access its own order granted, or no order (version 1, by hand)", async () => {
    const refund = (order_id: string, courses: string[]) => envelope("OrderRefunded", order_id, 3, { order_id, user_id: "u1", course_ids: courses, refund_reason: "meh" });
    const record = (course_id: string, order_id: string | null | undefined) =>
      m.bus.set("AccessRecord", deriveAccessId("u1", course_id), { access_id: deriveAccessId("u1", course_id), user_id: "u1", course_id, status: "active", progress: 0, completed: false, expires_at: null, ...(order_id === undefined ? {} : { order_id }) });
    // c1 was granted by o0 (o1, paid after it, granted nothing); c2 by o1; c3 by no order; c4 before order_id existed.
    record("c1", "o0");
    record("c2", "o1");
    record("c3", null);
    record("c4", undefined);
    expect(await m.handle("access-grants", refund("o1", ["c1", "c2", "c3", "c4"]))).toEqual(["handled"]);
    expect(m.bus.calls.map((c) => c.aggregateId).sort()).toEqual(["c2", "c3", "c4"].map((c) => deriveAccessId("u1", c)).sort());
  });

  it("grants nothing for a payment whose order was refunded since (an OrderPaid retried from the dead letters)", async () => {
    m.bus.set("Order", "o1", { order_id: "o1", user_id: "u1", course_ids: ["c1", "c2"], status: "refunded", payment_id: "pay", paid_at: null });
    expect(await m.handle("access-grants", paid())).toEqual(["handled"]);
    expect(m.bus.calls).toEqual([]);
    m.bus.set("Order", "o1", { order_id: "o1", user_id: "u1", course_ids: ["c1", "c2"], status: "paid", payment_id: "pay", paid_at: null });
    const again = envelope("OrderPaid", "o1", 2, { order_id: "o1", user_id: "u1", course_ids: ["c1", "c2"], payment_id: "pay" });
    expect(await m.handle("access-grants", again)).toEqual(["handled"]);
    expect(m.bus.calls.map((c) => c.type)).toEqual(["GrantCourseAccess", "GrantCourseAccess"]);
  });

  it("handles a batch in stream order: a refund never overtakes the payment it undoes", async () => {
    m.bus.latency = (req) => (req.type === "GrantCourseAccess" ? 30 : 0);
    const refunded = envelope("OrderRefunded", "o1", 3, { order_id: "o1", user_id: "u1", course_ids: ["c1", "c2"], refund_reason: "meh" });
    const outcomes = await new EventHandler(m.db, m.subscriber("access-grants")).applyBatch([paid(), refunded]);
    expect(outcomes).toEqual(["handled", "handled"]);
    expect(m.bus.finished).toEqual(["GrantCourseAccess", "GrantCourseAccess", "RevokeCourseAccess", "RevokeCourseAccess"]);
  });

  it.each(["rule_violated", "not_found", "conflict"] as const)("counts a %s answer as handled", async (code) => {
    m.bus.fail = () => nerveError(code);
    expect(await m.handle("access-grants", paid())).toEqual(["handled"]);
  });

  it.each(["unavailable", "internal"] as const)("throws on %s so the event is redelivered, and repeats nothing done", async (code) => {
    m.bus.fail = (req) => (req.aggregateId === deriveAccessId("u1", "c2") ? nerveError(code) : undefined);
    const e = paid();
    await expect(m.handle("access-grants", e)).rejects.toMatchObject({ code });
    m.bus.fail = () => undefined;
    expect(await m.handle("access-grants", e)).toEqual(["handled"]);
    // The redelivery issues the same keys, so the aggregate answers c1 from its idempotency store.
    const keys = m.bus.calls.map((c) => c.idempotencyKey);
    expect(new Set(keys).size).toBe(2);
  });

  it("dead-letters at once a command the contract refuses (a bug no retry fixes)", async () => {
    m.bus.fail = () => nerveError("invalid_request");
    await expect(m.handle("access-grants", paid())).rejects.toBeInstanceOf(PoisonEventError);
  });

  it("keeps idempotency keys within the contract's 128 characters", () => {
    const id = "0190a7a4-4e55-7000-8000-000000000000";
    expect(idempotencyKeyOf(id, "c".repeat(64))).toHaveLength(36 + 1 + 64);
    expect(idempotencyKeyOf(id, "c".repeat(64), "d".repeat(64)).length).toBeLessThanOrEqual(128);
  });
});

describe("policy-sync", () => {
  const course = (id: string, policy_id: string, status = "active", version = 1) =>
    m.bus.set("Course", id, { course_id: id, title: id, description: "", price: null, instructor_id: "i", policy_id, status }, version);
  const policy = (id: string, status = "active", replacement_policy_id: string | null = null) =>
    m.bus.set("RefundPolicy", id, { policy_id: id, name: id, type: "standard", refund_period_days: 14, max_progress_percent: null, status, replacement_policy_id });
  const createdOn = (id: string, policy_id: string) => envelope("CourseCreated", id, 1, { course_id: id, title: id, instructor_id: "i", policy_id });
  const deprecated = (id: string, replacement: string | null) => {
    policy(id, "deprecated", replacement);
    return envelope("PolicyDeprecated", id, 2, { policy_id: id, name: id, replacement_policy_id: replacement });
  };
  const moves = () => m.bus.calls.map((c) => [c.aggregateId, (c.body as { new_policy_id: string }).new_policy_id]);

  beforeEach(() => {
    for (const p of ["pol-a", "pol-b", "pol-c", "pol-default"]) policy(p);
  });

  it("moves every active course on the deprecated policy to its replacement, and no other course", async () => {
    for (const [id, p] of [["c1", "pol-a"], ["c2", "pol-a"], ["c3", "pol-b"]] as const) {
      course(id, p);
      await m.handle("policy-sync", createdOn(id, p));
    }
    course("c4", "pol-a", "deprecated", 2);
    await m.handle("policy-sync", createdOn("c4", "pol-a"), envelope("CourseDeprecated", "c4", 2, { course_id: "c4", title: "c4" }));
    const e = deprecated("pol-a", "pol-c");
    await m.handle("policy-sync", e);
    expect(moves()).toEqual([["c1", "pol-c"], ["c2", "pol-c"]]);
    expect(m.bus.calls[0]).toMatchObject({ context: "courses", type: "ChangeCoursePolicy", idempotencyKey: `${e.event_id}:c1`, causationId: e.event_id, correlationId: e.correlation_id });
  });

  it("uses the configured default when the policy names no replacement", async () => {
    course("c1", "pol-a");
    await m.handle("policy-sync", createdOn("c1", "pol-a"), deprecated("pol-a", null));
    expect(moves()).toEqual([["c1", "pol-default"]]);
  });

  it("moves a course whose CourseCreated arrives after its policy was deprecated", async () => {
    await m.handle("policy-sync", deprecated("pol-a", "pol-b"));
    expect(moves()).toEqual([]);
    course("c-late", "pol-a");
    await m.handle("policy-sync", createdOn("c-late", "pol-a"));
    expect(moves()).toEqual([["c-late", "pol-b"]]);
  });

  it("follows a chain of deprecated replacements to an active policy", async () => {
    course("c1", "pol-a");
    await m.handle("policy-sync", createdOn("c1", "pol-a"));
    policy("pol-b", "deprecated", "pol-c");
    await m.handle("policy-sync", deprecated("pol-a", "pol-b"));
    expect(moves()).toEqual([["c1", "pol-c"]]);
  });

  it("uses the configured default when replacements lead back (two policies deprecated at once, each naming the other)", async () => {
    course("c1", "pol-a");
    await m.handle("policy-sync", createdOn("c1", "pol-a"));
    policy("pol-b", "deprecated", "pol-a");
    await m.handle("policy-sync", deprecated("pol-a", "pol-b"));
    expect(moves()).toEqual([["c1", "pol-default"]]);
  });

  it("retries a course stranded by a lost race when the next policy is deprecated", async () => {
    course("c1", "pol-a");
    await m.handle("policy-sync", createdOn("c1", "pol-a"));
    m.bus.fail = () => nerveError("rule_violated"); // pol-b got deprecated between the read and the command
    await m.handle("policy-sync", deprecated("pol-a", "pol-b"));
    m.bus.fail = () => undefined;
    await m.handle("policy-sync", deprecated("pol-b", "pol-c"));
    expect(moves()).toEqual([["c1", "pol-b"], ["c1", "pol-c"]]);
  });

  it("leaves a course that has already left the policy, and courses with nowhere to go", async () => {
    const lone = await openReadModels();
    try {
      lone.bus.set("RefundPolicy", "pol-x", { policy_id: "pol-x", status: "deprecated", replacement_policy_id: null });
      lone.bus.set("Course", "c1", { course_id: "c1", policy_id: "pol-x", status: "active" });
      await lone.handle("policy-sync", createdOn("c1", "pol-x"), envelope("PolicyDeprecated", "pol-x", 2, { policy_id: "pol-x", name: "x", replacement_policy_id: null }));
      expect(lone.bus.calls).toEqual([]);
    } finally {
      await lone.close();
    }
    course("c2", "pol-b", "active", 2); // the aggregate already moved on; the index has not heard yet
    await m.handle("policy-sync", createdOn("c2", "pol-a"), deprecated("pol-a", "pol-c"));
    expect(moves()).toEqual([]);
  });

  it("marks courses with nowhere to go stranded: a later deprecation reads none of them again, and one line says how many stayed", async () => {
    // Was: every PolicyDeprecated of any policy read every such course again and warned once per course —
    // a CreatePolicy and a DeprecatePolicy made N reads and N warnings (client-driven volume audit).
    const log = captureLog("warn");
    const lone = await openReadModels({ logger: log.logger });
    try {
      const reads: string[] = [];
      const read = lone.bus.readState.bind(lone.bus);
      lone.bus.readState = async (type: string, id: string) => {
        if (type === "Course") reads.push(id);
        return read(type, id);
      };
      lone.bus.set("RefundPolicy", "pol-x", { policy_id: "pol-x", status: "deprecated", replacement_policy_id: null });
      const ids = ["s1", "s2", "s3"];
      for (const id of ids) {
        lone.bus.set("Course", id, { course_id: id, policy_id: "pol-x", status: "active" });
        await lone.handle("policy-sync", createdOn(id, "pol-x"));
      }
      await lone.handle("policy-sync", envelope("PolicyDeprecated", "pol-x", 2, { policy_id: "pol-x", name: "x", replacement_policy_id: null }));
      expect(reads.sort()).toEqual(ids);
      expect(log.lines.filter((l) => String(l.msg).includes("no replacement"))).toEqual([expect.objectContaining({ stranded: 3, policy_id: "pol-x" })]);
      // Another policy deprecated: the stranded courses are not read again, nothing more is said.
      lone.bus.set("RefundPolicy", "pol-y", { policy_id: "pol-y", status: "deprecated", replacement_policy_id: null });
      await lone.handle("policy-sync", envelope("PolicyDeprecated", "pol-y", 2, { policy_id: "pol-y", name: "y", replacement_policy_id: null }));
      expect(reads).toHaveLength(3);
      expect(log.lines.filter((l) => String(l.msg).includes("no replacement"))).toHaveLength(1);
      expect(lone.bus.calls).toEqual([]);
      // A course's own change brings it back into the index as active: moved once there is somewhere to go.
      lone.bus.set("RefundPolicy", "pol-z", { policy_id: "pol-z", status: "active", replacement_policy_id: null });
      lone.bus.set("Course", "s1", { course_id: "s1", policy_id: "pol-y", status: "active" }, 2);
      lone.bus.set("RefundPolicy", "pol-y", { policy_id: "pol-y", status: "deprecated", replacement_policy_id: "pol-z" });
      await lone.handle("policy-sync", envelope("CoursePolicyChanged", "s1", 2, { course_id: "s1", old_policy_id: "pol-x", new_policy_id: "pol-y" }));
      expect(lone.bus.calls.map((c) => [c.aggregateId, (c.body as { new_policy_id: string }).new_policy_id])).toEqual([["s1", "pol-z"]]);
    } finally {
      await lone.close();
    }
  });

  it("moves a policy's many courses a page at a time and a few at once, every one of them", async () => {
    const ids = Array.from({ length: 1_200 }, (_, i) => `many-${String(i).padStart(4, "0")}`);
    for (const id of ids) {
      course(id, "pol-a");
      await m.handle("policy-sync", createdOn(id, "pol-a"));
    }
    let inFlight = 0;
    let most = 0;
    m.bus.latency = (req) => {
      if (req.type !== "ChangeCoursePolicy") return 0;
      most = Math.max(most, ++inFlight);
      return 2;
    };
    m.bus.fail = (req) => {
      if (req.type === "ChangeCoursePolicy") inFlight--;
      return undefined;
    };
    await m.handle("policy-sync", deprecated("pol-a", "pol-c"));
    expect(moves().map(([id]) => id).sort()).toEqual(ids);
    expect(new Set(moves().map(([, to]) => to))).toEqual(new Set(["pol-c"]));
    expect(most).toBe(MOVES_AT_ONCE);
  });
});
