/**
 * What InboxPrune relies on: a projection that applies an event again after its inbox row was forgotten —
 * after later events, in any order — ends with the read model it had. Every projection through its
 * EventHandler (on SQLite its batches through the write worker, as the service runs them on more than two cores; and on
 * PostgreSQL), then the catalog and notifications through the whole consumer path: a nats-server, their
 * durables, the events published again after the prune.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { v7 } from "uuid";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { deriveAccessId, type EnvelopeBase } from "../../contracts/index.js";
import { ConsumerManager, EventHandler, InboxPrune } from "../../src/consumers/index.js";
import { ensureStreams } from "../../src/nats/index.js";
import { SqliteWriteWorker } from "../../src/persistence/sqlite-write-worker.js";
import { createSubscribers, SEARCH_FTS_TABLE } from "../../src/projections/index.js";
import { postgresAvailable, startNatsServer, tempPostgres, until, type NatsServerHandle } from "../support/index.js";
import { envelope, openReadModels, publishEvent, quiet, type ReadModels } from "./fixtures.js";

const available = await postgresAvailable();
const DAY = 86_400_000;
const HORIZON = 7 * DAY;

/** `e` as if made `daysAgo` days ago: its UUIDv7 carries that time, so the prune takes its inbox row. */
const aged = (e: EnvelopeBase, daysAgo: number): EnvelopeBase => ({ ...e, event_id: v7({ msecs: Date.now() - daysAgo * DAY }) });

const acc = (u: string, c: string) => ({ access_id: deriveAccessId(u, c), user_id: u, course_id: c });

/** A history touching every projection, 40 to 10 days old, in stream order within each aggregate. */
function history(): EnvelopeBase[] {
  const a1 = deriveAccessId("u1", "c1");
  const a2 = deriveAccessId("u2", "c1");
  const events = [
    envelope("UserRegistered", "u1", 1, { user_id: "u1", email: "a@example.com", name: "Ann" }),
    envelope("CourseCreated", "c1", 1, { course_id: "c1", title: "Rust from zero", instructor_id: "i1", policy_id: "p1" }),
    envelope("CourseUpdated", "c1", 2, { course_id: "c1", title: "Rust from zero", description: "Ownership first", price: { amount: 4900, currency: "EUR" } }),
    envelope("CourseAccessGranted", a1, 1, { ...acc("u1", "c1"), expires_at: null, order_id: "o-1" }),
    envelope("ProgressUpdated", a1, 2, { ...acc("u1", "c1"), progress: 40 }),
    envelope("AccessRevoked", a2, 2, { ...acc("u2", "c1"), reason: "order_refunded" }),
    envelope("UserEmailChanged", "u1", 2, { user_id: "u1", old_email: "a@example.com", new_email: "b@example.com" }),
    envelope("CoursePolicyChanged", "c1", 3, { course_id: "c1", old_policy_id: "p1", new_policy_id: "p2" }),
    envelope("ProgressUpdated", a1, 3, { ...acc("u1", "c1"), progress: 100 }),
    envelope("CourseCompleted", a1, 4, acc("u1", "c1")),
    envelope("CourseUpdated", "c1", 4, { course_id: "c1", title: "Rust in depth", description: "Lifetimes too", price: { amount: 5900, currency: "EUR" } }),
    envelope("ProgressUpdated", a2, 3, { ...acc("u2", "c1"), progress: 30 }),
    envelope("UserRegistered", "u2", 1, { user_id: "u2", email: "u2@example.com", name: "Bo" }),
    envelope("CourseCreated", "c2", 1, { course_id: "c2", title: "Go basics", instructor_id: "i2", policy_id: "p1" }),
    envelope("CourseDeprecated", "c2", 2, { course_id: "c2", title: "Go basics" }),
    envelope("AccessRevoked", a1, 5, { ...acc("u1", "c1"), reason: "order_refunded" }),
    envelope("CourseAccessGranted", a1, 6, { ...acc("u1", "c1"), expires_at: "2027-01-01T00:00:00.000Z", order_id: null }),
    envelope("AccessExpired", a1, 7, { ...acc("u1", "c1"), expired_at: "2027-01-01T00:00:00.000Z" }),
  ];
  return events.map((e, i) => aged(e, 40 - i));
}

/** Each projection's tables (the search index's FTS5 table too, on SQLite). */
const TABLES: Record<string, string[]> = {
  notifications: ["notifications", "notification_emails"],
  security: ["security_alerts"],
  analytics: ["analytics_learners"],
  certificates: ["certificates"],
  catalog: ["catalog_courses"],
  search: ["search_documents"],
  audit: ["audit_records"],
  "learner-progress": ["learner_access"],
};

/** Every row of a projection's tables, in a stable order. */
async function readModel(m: ReadModels, consumer: string): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  const tables = [...TABLES[consumer]!];
  for (const t of tables) out[t] = (await m.tx.execute<unknown[]>(`select * from ${t}`, [], "all")).map((r) => JSON.stringify(r)).sort();
  if (consumer === "search" && m.db.dialect === "sqlite") {
    out[SEARCH_FTS_TABLE] = (await m.tx.execute<unknown[]>(`select rowid, title, description from ${SEARCH_FTS_TABLE} order by rowid`, [], "all")).map((r) => JSON.stringify(r));
  }
  return out;
}

const inboxOf = async (m: ReadModels, consumer: string) =>
  (await m.db.execute<{ event_id: string }[]>("select event_id from consumer_inbox where consumer = ? order by event_id", [consumer], "all")).map((r) => r.event_id);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

describe.each([
  ["SQLite, through the write worker", false, false],
  ["PostgreSQL", true, !available],
] as const)("every projection applying old events again after the prune (%s)", (_name, pg, skip) => {
  it.skipIf(skip)("ends with the read model it had, the events re-applied in stream order, in reverse, and one by one", async () => {
    const db = pg ? await tempPostgres() : undefined;
    if (db) cleanups.push(() => db.drop());
    const m = await openReadModels({ url: db?.url });
    cleanups.push(() => m.close());
    const worker = pg ? undefined : new SqliteWriteWorker(m.db, () => undefined);
    if (worker) cleanups.push(() => worker.close());
    const subscribers = createSubscribers(m.deps);
    const events = history();
    const prune = new InboxPrune({ db: m.db, writer: worker, subscribers, horizonMs: HORIZON, pauseMs: 0 });
    expect([...prune.consumers].sort()).toEqual(Object.keys(TABLES).sort());

    for (const consumer of prune.consumers) {
      const handler = new EventHandler(m.db, subscribers.find((s) => s.name === consumer)!, undefined, undefined, worker);
      const wanted = events.filter((e) => handler.wants(e.event_type));
      expect(new Set(await handler.applyBatch(events)), consumer).toEqual(new Set(["handled", "skipped"]));
      const before = await readModel(m, consumer);
      expect(Object.values(before).every((rows) => rows.length > 0), consumer).toBe(true);

      let recorded = wanted.length;
      for (const again of [events, [...events].reverse(), ...events.map((e) => [e])]) {
        // Every row the last application recorded is past the horizon.
        expect((await prune.run()).deleted[consumer], consumer).toBe(recorded);
        expect(await inboxOf(m, consumer), consumer).toEqual([]);
        const out = await handler.applyBatch(again);
        // Applied again, not found in the inbox: the read model alone keeps it from changing.
        recorded = out.filter((o) => o === "handled").length;
        expect(recorded, consumer).toBe(again.filter((e) => handler.wants(e.event_type)).length);
        expect(await readModel(m, consumer), consumer).toEqual(before);
      }
    }
  });
});

describe("catalog and notifications through the consumer path, old events published again after the prune", () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url, noAsyncTraces: true });
    await ensureStreams(await jetstreamManager(nc));
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it("re-applies them (their inbox rows come back) and leaves both read models as they were", async () => {
    const m = await openReadModels();
    cleanups.push(() => m.close());
    const worker = new SqliteWriteWorker(m.db, () => undefined);
    cleanups.push(() => worker.close());
    const subscribers = [m.subscriber("catalog"), m.subscriber("notifications")];
    const consumers = new ConsumerManager({ db: m.db, js: jetstream(nc), jsm: await jetstreamManager(nc), logger: quiet, subscribers, batchWriter: worker, lagLogMs: 0 });
    cleanups.push(() => consumers.stop());
    await consumers.start();
    const events = history();
    const mine = (consumer: string) => events.filter((e) => consumers.handlers.get(consumer)!.wants(e.event_type)).map((e) => e.event_id).sort();
    for (const e of events) await publishEvent(nc, e);
    await until("both read models caught up", async () => (await inboxOf(m, "catalog")).length === mine("catalog").length && (await inboxOf(m, "notifications")).length === mine("notifications").length);
    const before = { catalog: await readModel(m, "catalog"), notifications: await readModel(m, "notifications") };
    expect(before.catalog.catalog_courses).toHaveLength(2);
    expect(before.notifications.notifications).toHaveLength(7);

    const prune = new InboxPrune({ db: m.db, writer: worker, subscribers, horizonMs: HORIZON, runsHere: (c) => consumers.runsHere(c) });
    expect((await prune.run()).deleted).toEqual({ notifications: mine("notifications").length, catalog: mine("catalog").length });

    // The same events again (as a relay re-publishes past the duplicate window), then one new event per
    // stream: once those are applied, everything before them in their streams is.
    for (const e of events) await publishEvent(nc, e);
    const markers = [
      envelope("CourseCreated", "c-last", 1, { course_id: "c-last", title: "Marker", instructor_id: "i1", policy_id: "p1" }),
      envelope("UserRegistered", "u-last", 1, { user_id: "u-last", email: "last@example.com", name: "Last" }),
      envelope("AccessExpired", deriveAccessId("u-last", "c1"), 2, { ...acc("u-last", "c1"), expired_at: "2027-01-01T00:00:00.000Z" }),
    ];
    for (const e of markers) await publishEvent(nc, e);
    const applied = async (consumer: string, ids: string[]) => {
      const inbox = new Set(await inboxOf(m, consumer));
      return ids.every((id) => inbox.has(id));
    };
    await until("the markers applied", async () => (await applied("catalog", [markers[0]!.event_id])) && (await applied("notifications", [markers[1]!.event_id, markers[2]!.event_id])));

    // Every old event went through `apply` again (its inbox row is back) ...
    expect(await applied("catalog", mine("catalog"))).toBe(true);
    expect(await applied("notifications", mine("notifications"))).toBe(true);
    // ... and the read models are what they were, but for the markers' own rows.
    await m.db.execute("delete from catalog_courses where course_id = ?", ["c-last"], "run");
    await m.db.execute("delete from notifications where user_id = ?", ["u-last"], "run");
    await m.db.execute("delete from notification_emails where user_id = ?", ["u-last"], "run");
    expect({ catalog: await readModel(m, "catalog"), notifications: await readModel(m, "notifications") }).toEqual(before);
  });
});
