/**
 * A replay's progress counts the events its durables read, not their streams': a filtered durable (the
 * certificates read one event type of EVENTS_ACCESS) starts near nothing done; and done only grows until
 * it ends at total, also while live traffic arrives faster than the replay reads. Real nats-server, real
 * SQLite read model.
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { ConsumerManager, type ReplayProgress } from "../../src/consumers/index.js";
import { catalogCourse } from "../../src/projections/index.js";
import { envelope, openReadModels, publishEvent, quiet, type ReadModels } from "../projections/fixtures.js";
import { until, useNatsWithStreams } from "../support/index.js";

let nc: NatsConnection;
let jsm: JetStreamManager;
useNatsWithStreams((h) => ({ nc, jsm } = h));
let m: ReadModels;
let consumers: ConsumerManager | undefined;
beforeEach(async () => {
  m = await openReadModels();
  await jsm.streams.purge("EVENTS_ACCESS");
  await jsm.streams.purge("EVENTS_COURSES");
});
afterEach(async () => {
  await consumers?.stop();
  await jsm.consumers.delete("EVENTS_ACCESS", "certificates").catch(() => false);
  await jsm.consumers.delete("EVENTS_COURSES", "catalog").catch(() => false);
  await m.close();
});

it("a filtered durable's replay counts its own events: total is theirs, and done never goes back and ends at it", async () => {
  const access = (n: number) => `acc_${String(n).padStart(32, "0")}`;
  // 200 events the certificates skip, among them 3 they read.
  for (let i = 1; i <= 200; i++) await publishEvent(nc, envelope("ProgressUpdated", access(i % 3), i + 1, { access_id: access(i % 3), user_id: "u1", course_id: "c1", progress: Math.min(99, i) }));
  for (let a = 0; a < 3; a++) await publishEvent(nc, envelope("CourseCompleted", access(a), 300, { access_id: access(a), user_id: "u1", course_id: "c1" }));
  consumers = new ConsumerManager({ db: m.db, js: jetstream(nc), jsm, logger: quiet, subscribers: [m.subscriber("certificates")], lagLogMs: 0 });
  await consumers.start();

  const seen: ReplayProgress[] = [];
  const last = await consumers.replay("certificates", (p) => seen.push({ ...p }));
  // Before, total was the stream's 203 and the first report said 200 of them done.
  expect(last).toEqual({ consumer: "certificates", done: 3, total: 3 });
  expect(seen[0]!.total).toBe(3);
  expect(seen[0]!.done).toBeLessThanOrEqual(3);
  for (let i = 1; i < seen.length; i++) expect(seen[i]!.done).toBeGreaterThanOrEqual(seen[i - 1]!.done);
  expect(seen.every((p) => p.total === 3 && p.done <= p.total)).toBe(true);
});

it("done never goes back when live traffic arrives in a burst during the replay, and ends at total", async () => {
  const created = (id: string) => envelope("CourseCreated", id, 1, { course_id: id, title: `Course ${id}`, instructor_id: "i1", policy_id: "p1" });
  for (let i = 0; i < 300; i++) await publishEvent(nc, created(`before-${i}`));
  let slow = false;
  const catalog = m.subscriber("catalog");
  consumers = new ConsumerManager({
    db: m.db,
    js: jetstream(nc),
    jsm,
    logger: quiet,
    lagLogMs: 0,
    subscribers: [
      {
        ...catalog,
        async apply(e, tx) {
          // 4 ms an event during the replay: the burst below arrives faster than it is read.
          if (slow) await new Promise((r) => setTimeout(r, 4));
          await catalog.apply!(e, tx);
        },
      },
    ],
  });
  await consumers.start();
  await until("the catalog is caught up", async () => (await catalogCourse(m.tx, "before-299")) !== undefined);

  slow = true;
  const seen: ReplayProgress[] = [];
  const publishBurst = async () => {
    for (let i = 0; i < 200; i++) await publishEvent(nc, created(`during-${i}`));
  };
  let burst: Promise<void> | undefined;
  const last = await consumers.replay("catalog", (p) => {
    seen.push({ ...p });
    // A third of the way: 200 new events at once.
    if (p.done >= 100) burst ??= publishBurst();
  });
  await burst;
  expect(burst, "the burst came during the replay").toBeDefined();
  expect(last).toEqual({ consumer: "catalog", done: 300, total: 300 });
  // Before, done was total − pending, and the burst's pending events pulled it back.
  for (let i = 1; i < seen.length; i++) expect(seen[i]!.done, `report ${i} of ${seen.length}`).toBeGreaterThanOrEqual(seen[i - 1]!.done);
  expect(seen.every((p) => p.done <= p.total)).toBe(true);
}, 60_000);
