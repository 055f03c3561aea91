/** The projections against a real SQLite file: each read model's rules, its query, and idempotent re-application. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { QueryDefinitions, deriveAccessId, type EnvelopeBase } from "../../contracts/index.js";
import { PoisonEventError } from "../../src/consumers/index.js";
import { courseStats, getLearnerProgress, listCertificates, listNotifications } from "../../src/projections/index.js";
import { envelope, openReadModels, readModelsFor, type ReadModels } from "./fixtures.js";
import { postgresAvailable } from "../support/index.js";

let m: ReadModels;
beforeEach(async () => {
  m = await openReadModels();
});
afterEach(async () => {
  await m.close();
});

const acc = (u: string, c: string) => ({ access_id: deriveAccessId(u, c), user_id: u, course_id: c });
const registered = (u: string, email: string, v = 1) => envelope("UserRegistered", u, v, { user_id: u, email, name: u.toUpperCase() });
const emailChanged = (u: string, from: string, to: string, v: number) => envelope("UserEmailChanged", u, v, { user_id: u, old_email: from, new_email: to });
const revoked = (u: string, c: string, v = 2) => envelope("AccessRevoked", deriveAccessId(u, c), v, { ...acc(u, c), reason: "order_refunded" });
const expired = (u: string, c: string, v = 2) => envelope("AccessExpired", deriveAccessId(u, c), v, { ...acc(u, c), expired_at: "2026-03-01T00:00:00.000Z" });

/** Empties a projection and its inbox, as a replay does. */
async function resetProjection(name: string) {
  await m.subscriber(name).reset!(m.tx);
  await m.tx.execute("delete from consumer_inbox where consumer = ?", [name], "run");
}

describe("notifications", () => {
  it("welcomes, tells both addresses of a change, and sends learner notices to the address valid at the time", async () => {
    const events = [registered("u1", "a@example.com"), revoked("u1", "c1"), emailChanged("u1", "a@example.com", "b@example.com", 2), expired("u1", "c2")];
    expect(await m.handle("notifications", ...events)).toEqual(["handled", "handled", "handled", "handled"]);
    const result = await listNotifications(m.tx)({ user_id: "u1" });
    expect(QueryDefinitions.ListNotifications.result.safeParse(result).success).toBe(true);
    const pairs = result.items.map((n) => [n.kind, n.to]);
    expect(pairs[0]).toEqual(["access_expired", "b@example.com"]);
    // The two notices of one change share their moment; between them the order is only stable, not meaningful.
    expect(pairs.slice(1, 3).sort()).toEqual([["email_changed", "a@example.com"], ["email_changed", "b@example.com"]]);
    expect(pairs.slice(3)).toEqual([["access_revoked", "a@example.com"], ["welcome", "a@example.com"]]);
    expect(result.items[0]).toMatchObject({ event_id: events[3]!.event_id, created_on: events[3]!.occurred_on, user_id: "u1" });
  });

  it("leaves `to` null while the address is unknown, and fills it in when the address arrives", async () => {
    const notice = revoked("u2", "c1");
    await m.handle("notifications", notice);
    expect((await listNotifications(m.tx)({ user_id: "u2" })).items.map((n) => n.to)).toEqual([null]);
    await m.handle("notifications", registered("u2", "late@example.com", 1));
    // The registration is later than the notice here, so no address was valid then: it stays null.
    expect((await listNotifications(m.tx)({ user_id: "u2" })).items.find((n) => n.kind === "access_revoked")?.to).toBeNull();
  });

  it("addresses a learner notice by the addresses known when it is read: a row left with the old one (two streams committing side by side on PostgreSQL) is answered right", async () => {
    const [r, c, a] = [registered("u4", "old@example.com"), emailChanged("u4", "old@example.com", "new@example.com", 2), revoked("u4", "c1")];
    await m.handle("notifications", r!, c!, a!);
    // What the race leaves: the notice's transaction read the address before the change committed, and
    // the change's re-addressing did not see the notice, not yet committed either.
    await m.tx.execute("update notifications set to_address = ? where kind = ?", ["old@example.com", "access_revoked"], "run");
    const items = (await listNotifications(m.tx)({ user_id: "u4" })).items;
    expect(items.find((n) => n.kind === "access_revoked")?.to).toBe("new@example.com");
    // Pages read the same.
    expect((await listNotifications(m.tx)({ user_id: "u4", limit: 1 })).items[0]).toMatchObject({ kind: "access_revoked", to: "new@example.com" });
    // The welcome and the change's two notices keep the addresses they were sent to.
    expect(items.filter((n) => n.kind !== "access_revoked").map((n) => n.to).sort()).toEqual(["new@example.com", "old@example.com", "old@example.com"]);
  });

  it("ends in the same rows whatever the order of the users and access streams (what makes a replay exact)", async () => {
    // In time order: registered, revoked, changed, expired.
    const [r, a1, c, a2] = [registered("u3", "x@example.com"), revoked("u3", "c1"), emailChanged("u3", "x@example.com", "y@example.com", 2), expired("u3", "c2")];
    const users = [r!, c!];
    const access = [a1!, a2!];
    await m.handle("notifications", r!, a1!, c!, a2!);
    const live = await m.rows("notifications", "notification_id");
    for (const order of [[...access, ...users], [...users, ...access], [access[1]!, users[1]!, access[0]!, users[0]!]]) {
      await resetProjection("notifications");
      await m.handle("notifications", ...order);
      expect(await m.rows("notifications", "notification_id")).toEqual(live);
    }
    expect(live.map((n) => n.to_address).sort()).toEqual(["x@example.com", "x@example.com", "x@example.com", "y@example.com", "y@example.com"]);
  });

  it.each([false, true])("re-addresses on an address change only the notices from its moment on whose address changes, not every notice of the user (PostgreSQL: %s)", async (pg) => {
    // Was: every learner notice of the user rewritten on every change (a user with 2,000 revocations: 2,002
    // rows per ChangeUserEmail on PostgreSQL; client-driven volume audit).
    if (pg && !(await postgresAvailable())) return;
    const r = pg ? await readModelsFor(true) : m;
    await r.handle("notifications", registered("u7", "a@example.com"), ...Array.from({ length: 20 }, (_, i) => revoked("u7", `c${i}`)));
    await r.tx.execute("create table notice_updates (n integer)", [], "run");
    await r.tx.execute("insert into notice_updates (n) values (0)", [], "run");
    if (pg) {
      await r.tx.execute("create function notice_updated() returns trigger language plpgsql as $$ begin update notice_updates set n = n + 1; return new; end $$", [], "run");
      await r.tx.execute("create trigger notice_updated after update on notifications for each row execute function notice_updated()", [], "run");
    } else await r.tx.execute("create trigger notice_updated after update on notifications begin update notice_updates set n = n + 1; end", [], "run");
    const updates = async () => Number(((await r.tx.execute("select n from notice_updates", [], "get")) as { n: number }).n);
    await r.handle("notifications", emailChanged("u7", "a@example.com", "b@example.com", 2));
    expect(await updates()).toBe(0);
    // A notice from before the next change that arrives after it (the two streams in no fixed order) takes the address of its moment.
    const late = revoked("u7", "c-late");
    await r.handle("notifications", expired("u7", "c-next"), emailChanged("u7", "b@example.com", "c@example.com", 3));
    expect(await updates()).toBe(0);
    await r.handle("notifications", late);
    const items = (await listNotifications(r.tx)({ user_id: "u7", limit: 100 })).items;
    expect(items.filter((n) => n.kind === "access_revoked" && n.event_id !== late.event_id).every((n) => n.to === "a@example.com")).toBe(true);
    expect(items.find((n) => n.event_id === late.event_id)?.to).toBe("b@example.com");
    expect(items.find((n) => n.kind === "access_expired")?.to).toBe("b@example.com");
  });

  it("changes nothing when an event comes again, through the inbox or around it", async () => {
    const e = registered("u4", "u4@example.com");
    await m.handle("notifications", e);
    expect(await m.handle("notifications", e)).toEqual(["duplicate"]);
    await m.tx.execute("delete from consumer_inbox", [], "run");
    expect(await m.handle("notifications", e)).toEqual(["handled"]);
    expect(await m.rows("notifications", "notification_id")).toHaveLength(1);
  });
});

describe("analytics, certificates, learner-progress, audit and security", () => {
  const u = "u5";
  const aid = deriveAccessId(u, "c1");
  const history = (): EnvelopeBase[] => [
    envelope("CourseAccessGranted", aid, 1, { ...acc(u, "c1"), expires_at: null, order_id: "o-1" }),
    envelope("ProgressUpdated", aid, 2, { ...acc(u, "c1"), progress: 40 }),
    envelope("ProgressUpdated", aid, 3, { ...acc(u, "c1"), progress: 100 }),
    envelope("CourseCompleted", aid, 4, acc(u, "c1")),
    envelope("AccessRevoked", aid, 5, { ...acc(u, "c1"), reason: "order_refunded" }),
    envelope("CourseAccessGranted", aid, 6, { ...acc(u, "c1"), expires_at: "2027-01-01T00:00:00.000Z", order_id: null }),
    envelope("AccessExpired", aid, 7, { ...acc(u, "c1"), expired_at: "2027-01-01T00:00:00.000Z" }),
  ];

  it("computes per-course statistics over each learner's latest progress", async () => {
    const other = deriveAccessId("u6", "c1");
    await m.handle("analytics", ...history(), envelope("ProgressUpdated", other, 2, { ...acc("u6", "c1"), progress: 30 }));
    expect(await courseStats(m.tx)({ course_id: "c1" })).toEqual({ course_id: "c1", learners: 2, completions: 1, average_progress: 65 });
    // A stale, lower progress (redelivered late) does not pull the figure down.
    await m.handle("analytics", envelope("ProgressUpdated", other, 1, { ...acc("u6", "c1"), progress: 10 }));
    expect((await courseStats(m.tx)({ course_id: "c1" })).average_progress).toBe(65);
    expect(await courseStats(m.tx)({ course_id: "nobody" })).toEqual({ course_id: "nobody", learners: 0, completions: 0, average_progress: 0 });
  });

  it("issues one certificate per completed course, dated when it was completed", async () => {
    const events = history();
    await m.handle("certificates", ...events);
    const result = await listCertificates(m.tx)({ user_id: u });
    expect(QueryDefinitions.ListCertificates.result.safeParse(result).success).toBe(true);
    expect(result.items).toEqual([{ certificate_id: `crt_${aid.slice(4)}`, user_id: u, course_id: "c1", access_id: aid, issued_on: events[3]!.occurred_on }]);
  });

  it("follows every access record as the aggregate does: a re-grant keeps progress and completion", async () => {
    const events = history();
    await m.handle("learner-progress", ...events.slice(0, 2));
    expect((await getLearnerProgress(m.tx)({ user_id: u })).items[0]?.order_id).toBe("o-1");
    await m.handle("learner-progress", ...events.slice(2, 6));
    let result = await getLearnerProgress(m.tx)({ user_id: u });
    expect(QueryDefinitions.GetLearnerProgress.result.safeParse(result).success).toBe(true);
    // The re-grant names no order: the record shows the latest grant's (null), as GetAccess does.
    expect(result.items).toEqual([{ ...acc(u, "c1"), status: "active", progress: 100, completed: true, expires_at: "2027-01-01T00:00:00.000Z", order_id: null, version: 6 }]);
    // An older event applied again without the inbox changes nothing: every statement is version-guarded.
    await m.tx.execute("delete from consumer_inbox", [], "run");
    await m.handle("learner-progress", events[4]!, events[6]!);
    result = await getLearnerProgress(m.tx)({ user_id: u });
    expect(result.items[0]).toMatchObject({ status: "expired", version: 7 });
  });

  it("keeps an audit record of every revocation and expiry, and a security alert per e-mail change", async () => {
    await m.handle("audit", ...history());
    expect((await m.rows("audit_records", "occurred_on")).map((r) => [r.event_type, r.detail])).toEqual([
      ["AccessRevoked", "order_refunded"],
      ["AccessExpired", "2027-01-01T00:00:00.000Z"],
    ]);
    const change = emailChanged(u, "old@example.com", "new@example.com", 2);
    expect(await m.handle("security", registered(u, "old@example.com"), change, change)).toEqual(["skipped", "handled", "duplicate"]);
    expect(await m.rows("security_alerts", "occurred_on")).toEqual([
      { alert_id: change.event_id, user_id: u, kind: "email_changed", old_email: "old@example.com", new_email: "new@example.com", correlation_id: change.correlation_id, occurred_on: change.occurred_on },
    ]);
  });

  it("refuses an event whose payload breaks the contract as poison, and records nothing of it", async () => {
    const broken = { ...registered("u7", "u7@example.com"), payload: { user_id: "u7", name: "No address" } };
    await expect(m.handle("notifications", broken)).rejects.toBeInstanceOf(PoisonEventError);
    expect(await m.rows("consumer_inbox", "event_id")).toEqual([]);
    expect(await m.rows("notifications", "notification_id")).toEqual([]);
  });
});
