/** What PlaceOrder's decider is told about the buyer's access (src/aggregates/orders.ts), at the command's time. */
import { describe, expect, it } from "vitest";
import { deriveAccessId, type Command } from "../../contracts/index.js";
import type { AccessRecordState } from "../../actors/access/index.js";
import { ordersModule } from "../../src/aggregates/orders.js";
import type { Lookups } from "../../src/runtime/index.js";

const NOW = "2026-06-01T00:00:05.000Z";
const record = (course_id: string, over: Partial<AccessRecordState>): AccessRecordState => ({
  access_id: deriveAccessId("u1", course_id),
  user_id: "u1",
  course_id,
  status: "active",
  progress: 0,
  completed: false,
  expires_at: null,
  order_id: null,
  ...over,
});

// The states a PlaceOrder reads, as committed: a user, four courses for sale, and the user's access to them.
const access: Record<string, AccessRecordState> = {
  [deriveAccessId("u1", "lifetime")]: record("lifetime", {}),
  [deriveAccessId("u1", "trial-over")]: record("trial-over", { expires_at: "2026-06-01T00:00:00.000Z" }),
  [deriveAccessId("u1", "trial-on")]: record("trial-on", { expires_at: "2026-06-02T00:00:00.000Z" }),
  [deriveAccessId("u1", "revoked")]: record("revoked", { status: "revoked" }),
};
const lookups = {
  readState: async (type: string, id: string) => {
    if (type === "User") return { state: { user_id: id }, version: 1 };
    if (type === "Course") return { state: { status: "active", price: { amount: 100, currency: "EUR" }, policy_id: "p1" }, version: 1 };
    return { state: access[id] ?? null, version: access[id] ? 1 : 0 };
  },
} as unknown as Lookups;

describe("PlaceOrder's facts: the access the buyer holds", () => {
  it("count a record past its expires_at as over, though its expiry timer has not fired yet (was: held, so the learner could not buy the course again)", async () => {
    const command = { type: "PlaceOrder", aggregate_id: "o1", now: NOW, body: { user_id: "u1", course_ids: ["lifetime", "trial-over", "trial-on", "revoked", "never"] } } as unknown as Command;
    const facts = await ordersModule.facts!(command, null, lookups);
    expect(facts.activeAccess).toContain("lifetime");
    expect(facts.activeAccess).not.toContain("trial-over");
  });

  it("let a learner buy a course they hold for a time only (a trial): only open-ended access is held for good (was: refused until the trial ended)", async () => {
    const command = { type: "PlaceOrder", aggregate_id: "o1", now: NOW, body: { user_id: "u1", course_ids: ["lifetime", "trial-over", "trial-on", "revoked", "never"] } } as unknown as Command;
    const facts = await ordersModule.facts!(command, null, lookups);
    expect(facts.activeAccess).toEqual(["lifetime"]);
  });
});
