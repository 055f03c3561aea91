/**
 * The chaos run's end checks over every context (test/support/cluster.ts's assertConsistent covers the
 * users stream of its profile load): each acknowledged command's events once in the event log and once in
 * their stream, per-aggregate versions gap-free and in order; every durable consumer at its streams' end;
 * each consumer's inbox in per-aggregate version order; and read models equal to a single-instance replay.
 */
import { expect } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { Contexts, decodeMsgPack, deriveAccessId, type EnvelopeBase } from "../../contracts/index.js";
import type { Database } from "../../src/persistence/index.js";
import { openReadModels } from "../projections/fixtures.js";
import type { Ack } from "./stories.js";

/** One logged event. */
export interface Logged {
  event_id: string;
  event_type: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: number;
}

/** The whole event log, in (aggregate, version) order. */
export async function wholeLog(db: Database): Promise<Logged[]> {
  const rows = await db.execute<Logged[]>("select event_id, event_type, aggregate_type, aggregate_id, aggregate_version from nerve_events order by aggregate_type, aggregate_id, aggregate_version", [], "all");
  return rows.map((r) => ({ ...r, aggregate_version: Number(r.aggregate_version) }));
}

/** Every envelope of a stream, in stream order. */
export async function streamEnvelopes(nc: NatsConnection, stream: string): Promise<EnvelopeBase[]> {
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  const out: EnvelopeBase[] = [];
  if (info.state.messages === 0) return out;
  const messages = await (await jetstream(nc).consumers.get(stream)).consume({ max_messages: 1000 });
  try {
    for await (const m of messages) {
      const d = decodeMsgPack(m.data);
      if (d.ok) out.push(d.value as EnvelopeBase);
      if (m.seq >= info.state.last_seq) break;
    }
  } finally {
    await messages.close();
  }
  return out;
}

const byAggregate = <T extends { aggregate_type: string; aggregate_id: string }>(items: T[]) => {
  const out = new Map<string, T[]>();
  for (const e of items) {
    const k = `${e.aggregate_type}/${e.aggregate_id}`;
    out.set(k, [...(out.get(k) ?? []), e]);
  }
  return out;
};

/**
 * Log and streams: gap-free versions, each acknowledged command's events logged under its aggregate with
 * the acknowledged version last, every stream = its part of the log (once each, in version order), and
 * among the aggregates `ours` names (those only `acked`'s commands touch) no event a client did not cause
 * but for the access-grants process manager's grants and revocations.
 */
export async function assertLogAndStreams(nc: NatsConnection, db: Database, acked: Ack[], ours: (e: Logged) => boolean): Promise<{ logged: number; streamed: number }> {
  const log = await wholeLog(db);
  const byId = new Map(log.map((e) => [e.event_id, e]));
  for (const [k, events] of byAggregate(log)) expect(events.map((e) => e.aggregate_version), `${k}: gap-free`).toEqual(events.map((_, i) => i + 1));
  const missing = acked.filter((a) => {
    const events = a.eventIds.map((id) => byId.get(id));
    return events.some((e) => e?.aggregate_id !== a.aggregateId) || events.at(-1)?.aggregate_version !== a.version;
  });
  expect(missing.slice(0, 5), `acknowledged commands missing from the log (${missing.length})`).toEqual([]);
  const keysOf = new Map<string, string>();
  for (const a of acked) for (const id of a.eventIds) keysOf.set(id, keysOf.get(id) ?? a.key);
  // Every event is some acknowledged command's, but for what the access-grants process manager issues.
  const uncaused = log.filter((e) => ours(e) && !keysOf.has(e.event_id) && !(e.aggregate_type === "AccessRecord" && (e.event_type === "CourseAccessGranted" || e.event_type === "AccessRevoked")));
  expect(uncaused.slice(0, 5), `events no acknowledged command caused (${uncaused.length}): a command that ran twice, or a lost reply`).toEqual([]);
  const perAccess = byAggregate(log.filter((e) => e.aggregate_type === "AccessRecord"));
  const doubled = [...perAccess].filter(([, es]) => es.filter((e) => e.event_type === "CourseAccessGranted").length > 1 || es.filter((e) => e.event_type === "AccessRevoked").length > 1);
  expect(doubled.slice(0, 3).map(([k]) => k), "access records granted or revoked twice").toEqual([]);

  let streamed = 0;
  for (const [context, { aggregate, stream }] of Object.entries(Contexts)) {
    const envelopes = await streamEnvelopes(nc, stream);
    streamed += envelopes.length;
    const ids = envelopes.map((e) => e.event_id);
    expect(ids.length - new Set(ids).size, `${stream}: events published twice`).toBe(0);
    const logged = log.filter((e) => e.aggregate_type === aggregate).map((e) => e.event_id).sort();
    expect([...ids].sort(), `${stream} = the ${context} log`).toEqual(logged);
    for (const [k, es] of byAggregate(envelopes)) expect(es.map((e) => e.aggregate_version), `${k}: stream order`).toEqual(es.map((_, i) => i + 1));
  }
  return { logged: log.length, streamed };
}

/** How many events the five streams hold. */
export async function streamedCount(nc: NatsConnection): Promise<number> {
  const jsm = await jetstreamManager(nc);
  let n = 0;
  for (const { stream } of Object.values(Contexts)) n += (await jsm.streams.info(stream)).state.messages;
  return n;
}

/**
 * The access-grants process manager's effects, once each: every course of an order paid and never
 * refunded is granted, and the access to a refunded order's course ends revoked (or was never granted:
 * the refund came before its grant, which the process manager then refuses). Returns the orders checked.
 */
export async function assertGrants(db: Database, acked: Ack[]): Promise<number> {
  const log = byAggregate((await wholeLog(db)).filter((e) => e.aggregate_type === "AccessRecord"));
  const done = (type: string) => new Set(acked.filter((a) => a.type === type).map((a) => a.aggregateId));
  const [paid, refunded] = [done("MarkOrderPaid"), done("RefundOrder")];
  const wrong: string[] = [];
  let orders = 0;
  for (const a of acked.filter((x) => x.type === "PlaceOrder" && paid.has(x.aggregateId))) {
    orders++;
    const { user_id, course_ids } = a.body as { user_id: string; course_ids: string[] };
    for (const course of course_ids) {
      const types = (log.get(`AccessRecord/${deriveAccessId(user_id, course)}`) ?? []).map((e) => e.event_type);
      if (refunded.has(a.aggregateId) ? types.length > 0 && types.at(-1) !== "AccessRevoked" : !types.includes("CourseAccessGranted")) {
        wrong.push(`${a.aggregateId} ${course}${refunded.has(a.aggregateId) ? " (refunded)" : ""}: ${types.join(", ") || "no events"}`);
      }
    }
  }
  expect(wrong.slice(0, 10), `paid orders whose access the process manager did not grant or revoke (${wrong.length})`).toEqual([]);
  return orders;
}

/** The durables of every stream, and those of them with pending or unacknowledged messages (none: all caught up). */
export async function consumersBehind(nc: NatsConnection): Promise<{ durables: number; behind: string[] }> {
  const jsm = await jetstreamManager(nc);
  const behind: string[] = [];
  let durables = 0;
  for (const { stream } of Object.values(Contexts)) {
    for await (const c of jsm.consumers.list(stream)) {
      if (!c.config.durable_name || c.name.startsWith("nerve_clock_")) continue;
      durables++;
      if (c.num_pending + c.num_ack_pending > 0) behind.push(`${stream}/${c.name}: ${c.num_pending} pending, ${c.num_ack_pending} unacknowledged`);
    }
  }
  return { durables, behind };
}

/**
 * Each consumer's inbox against the log: per aggregate, the events it handled carry non-decreasing
 * handled_on times in version order (one batch shares a transaction, so ties are allowed). Returns the
 * events checked.
 */
export async function assertInboxOrder(db: Database): Promise<number> {
  const rows = await db.execute<{ consumer: string; aggregate_type: string; aggregate_id: string; aggregate_version: number; handled_on: string }[]>(
    `select i.consumer, e.aggregate_type, e.aggregate_id, e.aggregate_version, i.handled_on from consumer_inbox i join nerve_events e on e.event_id = i.event_id
     order by i.consumer, e.aggregate_type, e.aggregate_id, e.aggregate_version`,
    [],
    "all",
  );
  const outOfOrder: string[] = [];
  for (let i = 1; i < rows.length; i++) {
    const a = rows[i - 1]!;
    const b = rows[i]!;
    if (a.consumer === b.consumer && a.aggregate_type === b.aggregate_type && a.aggregate_id === b.aggregate_id && b.handled_on < a.handled_on) {
      outOfOrder.push(`${b.consumer} ${b.aggregate_type}/${b.aggregate_id}: v${b.aggregate_version} handled ${b.handled_on}, before v${a.aggregate_version} (${a.handled_on})`);
    }
  }
  expect(outOfOrder.slice(0, 10), `events a consumer applied out of order (${outOfOrder.length})`).toEqual([]);
  return rows.length;
}

/** The projections compared with a single-instance replay: each reads one stream, so its order is the stream's. */
export const REPLAYED = [
  { consumer: "catalog", context: "courses", tables: ["catalog_courses"] },
  { consumer: "learner-progress", context: "access", tables: ["learner_access"] },
  { consumer: "certificates", context: "access", tables: ["certificates"] },
  { consumer: "analytics", context: "access", tables: ["analytics_learners"] },
  { consumer: "audit", context: "access", tables: ["audit_records"] },
] as const;

const comparable = (rows: Record<string, unknown>[]) =>
  rows
    .map((r) => JSON.stringify(Object.fromEntries(Object.entries(r).sort(([x], [y]) => x.localeCompare(y)).map(([k, v]) => [k, v === null ? null : typeof v === "boolean" ? String(Number(v)) : String(v)]))))
    .sort();

/** The {@link REPLAYED} read models of the cluster equal those one fresh instance builds from the streams. Returns the rows compared. */
export async function assertReadModelsAsReplayed(nc: NatsConnection, db: Database): Promise<number> {
  const single = await openReadModels();
  let compared = 0;
  try {
    const streams = new Map<string, EnvelopeBase[]>();
    for (const { consumer, context, tables } of REPLAYED) {
      const stream = Contexts[context].stream;
      if (!streams.has(stream)) streams.set(stream, await streamEnvelopes(nc, stream));
      await single.handle(consumer, ...streams.get(stream)!);
      for (const table of tables) {
        const shared = comparable(await db.execute<Record<string, unknown>[]>(`select * from ${table}`, [], "all"));
        expect(shared, `${table} (${consumer}): the cluster's rows = a single instance's replay`).toEqual(comparable(await single.tx.execute(`select * from ${table}`, [], "all")));
        compared += shared.length;
      }
    }
  } finally {
    await single.close();
  }
  return compared;
}
