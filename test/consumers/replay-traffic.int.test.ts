/**
 * A replay finishes under steady traffic: it ends once the durable has acknowledged every event that
 * was in the stream when the replay began, not when it is first seen with nothing pending at all —
 * which, while commands keep coming faster than the consumer applies them, is never. Real nats-server,
 * real SQLite. (The traffic here is one this machine's consumers keep up with, so these two cases pass
 * on the old criterion too: they show the replay is whole under traffic; the criterion's cases above
 * show where the old one never ends.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ask, caughtUp, dump, eventually, ok } from "../e2e/story.js";
import { replayCaughtUp } from "../../src/consumers/index.js";
import { command, startTestNerve, type TestNerve } from "../support/nerve.js";

const COURSES = 20;
const USERS = 20;
const courseId = (i: number) => `c-replay-${i}`;
const userId = (i: number) => `u-replay-${i}`;

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
  await ok(t, "policies", "CreatePolicy", "pol-replay", { name: "Standard", type: "standard", refund_period_days: 14 });
  for (let i = 0; i < COURSES; i++) await ok(t, "courses", "CreateCourse", courseId(i), { title: `Course ${i} v0`, instructor_id: "i-1", policy_id: "pol-replay" });
  for (let i = 0; i < USERS; i++) await ok(t, "users", "RegisterUser", userId(i), { email: `u${i}@example.com`, name: `User ${i}` });
  for (let i = 0; i < USERS; i++) await ok(t, "users", "ChangeUserEmail", userId(i), { new_email: `u${i}.v1@example.com` });
  await caughtUp(t);
}, 60_000);
afterAll(async () => {
  await t?.close();
});

/** Sends commands, `lanes` at a time, until `stop()`; counts the ones that succeeded. */
function traffic(lanes: number, next: (n: number) => [context: string, type: string, id: string, body: unknown]) {
  let running = true;
  let sent = 0;
  let succeeded = 0;
  const lane = async () => {
    while (running) {
      const [context, type, id, body] = next(sent++);
      const r = await command(t.client, context, type, id, body).catch(() => undefined);
      if (r?.body.ok) succeeded++;
    }
  };
  const all = Promise.all(Array.from({ length: lanes }, lane));
  return {
    get succeeded() {
      return succeeded;
    },
    async stop() {
      running = false;
      await all;
    },
  };
}

describe("when a replay has caught up", () => {
  const at = (ackFloor: number, pending: number, ackPending = 0) => ({ stream: "EVENTS_COURSES", filter: "events.courses.>", ackFloor, pending, ackPending });
  const started = new Map([["EVENTS_COURSES events.courses.>", 500]]);
  it("at the start's last event, whatever arrived since: under steady traffic the durable is rarely seen with nothing pending", () => {
    expect(replayCaughtUp([at(499, 40, 1)], started)).toBe(false);
    expect(replayCaughtUp([at(500, 40, 3)], started)).toBe(true);
    expect(replayCaughtUp([at(731, 12)], started)).toBe(true);
  });
  it("when nothing is left at all (a stream whose last events the durable skips, or an empty one)", () => {
    expect(replayCaughtUp([at(0, 0)], started)).toBe(true);
    expect(replayCaughtUp([at(0, 0)], new Map())).toBe(true);
  });
  it("only when every binding has", () => {
    const users = { stream: "EVENTS_USERS", filter: "events.users.UserEmailChanged.*", ackFloor: 20, pending: 5, ackPending: 0 };
    const both = new Map([...started, ["EVENTS_USERS events.users.UserEmailChanged.*", 30]]);
    expect(replayCaughtUp([at(600, 9), users], both)).toBe(false);
    expect(replayCaughtUp([at(600, 9), { ...users, ackFloor: 30 }], both)).toBe(true);
  });
});

describe("replay under steady traffic", () => {
  it("a whole-stream consumer (catalog) finishes at the stream's last event as of its start, and the read model holds everything up to there", async () => {
    const load = traffic(8, (n) => ["courses", "UpdateCourse", courseId(n % COURSES), { title: `Course ${n % COURSES} at ${n}` }]);
    try {
      await eventually(() => expect(load.succeeded).toBeGreaterThan(50));
      const before = load.succeeded;
      const seen: number[] = [];
      const last = await t.nerve.consumers.replay("catalog", (p) => seen.push(p.done));
      expect(last.done).toBe(last.total);
      expect(last.total).toBeGreaterThanOrEqual(COURSES + before);
      // Traffic went on all along, so the replay ended with events still arriving.
      const during = load.succeeded;
      await eventually(() => expect(load.succeeded).toBeGreaterThan(during + 20));
      // Progress only moves forward, to the figure the replay ended with (it is told at least that once).
      expect(seen.length).toBeGreaterThan(0);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
      expect(seen.at(-1)).toBe(last.done);
    } finally {
      await load.stop();
    }
    await caughtUp(t, ["catalog"]);
    // Rebuilt and caught up: every course as its last update left it.
    const rows = (await dump(t, "select course_id, title from catalog_courses order by course_id")) as { course_id: string; title: string }[];
    expect(rows).toHaveLength(COURSES);
    for (const r of rows) expect(r.title).toBe((await ask(t, "GetCourse", { course_id: r.course_id })).title);
    expect(rows.every((r) => !r.title.endsWith(" v0"))).toBe(true);
  }, 90_000);

  it("a consumer of one event type (security: UserEmailChanged) finishes at that type's last event as of its start", async () => {
    const load = traffic(8, (n) => ["users", "ChangeUserEmail", userId(n % USERS), { new_email: `u${n % USERS}.n${n}@example.com` }]);
    try {
      await eventually(() => expect(load.succeeded).toBeGreaterThan(50));
      const last = await t.nerve.consumers.replay("security");
      expect(last.done).toBe(last.total);
      expect(last.total).toBeGreaterThanOrEqual(USERS + 50);
      const during = load.succeeded;
      await eventually(() => expect(load.succeeded).toBeGreaterThan(during + 20));
    } finally {
      await load.stop();
    }
    await caughtUp(t, ["security"]);
    const [row] = (await dump(t, "select count(*) as n from security_alerts")) as { n: number }[];
    expect(row!.n).toBeGreaterThan(0);
  }, 90_000);
});
