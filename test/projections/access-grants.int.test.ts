/**
 * access-grants against the real service (real nats-server, real SQLite): a refund takes away only the
 * access its own order granted. Two orders may name one course when both were placed before either was
 * paid; the access record names the latest paid and remembers the other: refunding either leaves the
 * access the other paid for, and only refunding both takes it away.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deriveAccessId } from "../../contracts/index.js";
import { ask, caughtUp, eventually, ok, refused } from "../e2e/story.js";
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
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: access })).toMatchObject({ status: "active", order_id: "o-second" }));

    await ok(t, "orders", "RefundOrder", "o-second", { refund_reason: "bought twice" });
    await caughtUp(t, ["access-grants"]);
    expect(await ask(t, "GetAccess", { access_id: access })).toMatchObject({ status: "active", order_id: "o-first" });

    await ok(t, "orders", "RefundOrder", "o-first", { refund_reason: "changed my mind" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: access })).toMatchObject({ status: "revoked", order_id: "o-first" }));
  }, 60_000);

  it("refunding the first paid order leaves the access the second paid for (was: revoked, the second order paid for nothing); refunding the second too revokes it", async () => {
    const other = deriveAccessId("u-two-orders-b", "c-twice");
    await ok(t, "users", "RegisterUser", "u-two-orders-b", { email: "two-b@example.com", name: "Two Orders B" });
    await ok(t, "orders", "PlaceOrder", "o-b1", { user_id: "u-two-orders-b", course_ids: ["c-twice"] });
    await ok(t, "orders", "PlaceOrder", "o-b2", { user_id: "u-two-orders-b", course_ids: ["c-twice"] });
    await ok(t, "orders", "MarkOrderPaid", "o-b1", { payment_id: "pay-b1" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: other })).toMatchObject({ status: "active", order_id: "o-b1" }));
    await ok(t, "orders", "MarkOrderPaid", "o-b2", { payment_id: "pay-b2" });
    await caughtUp(t, ["access-grants"]);

    await ok(t, "orders", "RefundOrder", "o-b1", { refund_reason: "bought twice" });
    await caughtUp(t, ["access-grants"]);
    expect(await ask(t, "GetAccess", { access_id: other })).toMatchObject({ status: "active", order_id: "o-b2" });

    await ok(t, "orders", "RefundOrder", "o-b2", { refund_reason: "changed my mind" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: other })).toMatchObject({ status: "revoked" }));
  }, 60_000);

  it("a refund never grants: access revoked by hand stays revoked though another paid order remains (was: granted again, for good)", async () => {
    const third = deriveAccessId("u-two-orders-c", "c-twice");
    await ok(t, "users", "RegisterUser", "u-two-orders-c", { email: "two-c@example.com", name: "Two Orders C" });
    await ok(t, "orders", "PlaceOrder", "o-c1", { user_id: "u-two-orders-c", course_ids: ["c-twice"] });
    await ok(t, "orders", "PlaceOrder", "o-c2", { user_id: "u-two-orders-c", course_ids: ["c-twice"] });
    await ok(t, "orders", "MarkOrderPaid", "o-c1", { payment_id: "pay-c1" });
    await ok(t, "orders", "MarkOrderPaid", "o-c2", { payment_id: "pay-c2" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: third })).toMatchObject({ status: "active", order_id: "o-c2" }));
    await ok(t, "access", "RevokeCourseAccess", third, { reason: "terms violated" });

    await ok(t, "orders", "RefundOrder", "o-c2", { refund_reason: "bought twice" });
    await caughtUp(t, ["access-grants"]);
    expect(await ask(t, "GetAccess", { access_id: third })).toMatchObject({ status: "revoked", order_id: "o-c2" });
  }, 60_000);

  it("refuses a grant naming an order that did not pay for it (made up, another learner's): a refund of the real one still revokes (was: the made-up order kept the access)", async () => {
    const mine = deriveAccessId("u-named", "c-twice");
    await ok(t, "users", "RegisterUser", "u-named", { email: "named@example.com", name: "Named" });
    await ok(t, "orders", "PlaceOrder", "o-named", { user_id: "u-named", course_ids: ["c-twice"] });
    await ok(t, "orders", "MarkOrderPaid", "o-named", { payment_id: "pay-named" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: mine })).toMatchObject({ status: "active", order_id: "o-named" }));
    await refused(t, "access", "GrantCourseAccess", mine, { user_id: "u-named", course_id: "c-twice", order_id: "o-does-not-exist" }, "rule_violated");
    await refused(t, "access", "GrantCourseAccess", mine, { user_id: "u-named", course_id: "c-twice", order_id: "o-first" }, "rule_violated");
    await ok(t, "orders", "RefundOrder", "o-named", { refund_reason: "changed my mind" });
    await eventually(async () => expect(await ask(t, "GetAccess", { access_id: mine })).toMatchObject({ status: "revoked", order_id: "o-named" }));
  }, 60_000);
});
