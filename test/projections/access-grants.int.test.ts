/**
 * access-grants against the real service (real nats-server, real SQLite): a refund takes away only the
 * access its own order granted. Two orders may name one course when both were placed before either was
 * paid; the access record names the first one paid, and refunding the other leaves it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveAccessId } from "../../contracts/index.js";
import { ask, caughtUp, eventually, ok } from "../e2e/story.js";
import { startTestNerve, type TestNerve } from "../support/nerve.js";

const EUR = (amount: number) => ({ amount, currency: "EUR" });
const access = deriveAccessId("u-two-orders", "c-twice");

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
  await ok(t, "policies", "CreatePolicy", "pol-std", { name: "Standard", type: "standard", refund_period_days: 14 });
  await ok(t, "courses", "CreateCourse", "c-twice", { title: "Twice bought", instructor_id: "i-1", policy_id: "pol-std", price: EUR(1000) });
  await ok(t, "users", "RegisterUser", "u-two-orders", { email: "two@example.com", name: "Two Orders" });
});
afterAll(async () => {
  await t?.close();
});

describe("a refund and the access of another order", () => {
  it("refunding the second paid order for a course leaves the access the first paid for; refunding the first revokes it", async () => {
    await ok(t, "orders", "PlaceOrder", "o-first", { user_id: "u-two-orders", course_ids: ["c-twice"] });
    await ok(t, "orders", "PlaceOrder", "o-second", { user_id: "u-two-orders", course_ids: ["c-twice"] });
    await ok(t, "orders", "MarkOrderPaid", "o-first", { payment_id: "pay-1" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: access })).toMatchObject({ status: "active", order_id: "o-first" }));
    await ok(t, "orders", "MarkOrderPaid", "o-second", { payment_id: "pay-2" });
    await caughtUp(t, ["access-grants"]);

    await ok(t, "orders", "RefundOrder", "o-second", { refund_reason: "bought twice" });
    await caughtUp(t, ["access-grants"]);
    expect(await ask(t, "GetAccess", { access_id: access })).toMatchObject({ status: "active", order_id: "o-first" });

    await ok(t, "orders", "RefundOrder", "o-first", { refund_reason: "changed my mind" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: access })).toMatchObject({ status: "revoked", order_id: "o-first" }));
  }, 60_000);
});
