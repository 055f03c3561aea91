/**
 * Consumer takeovers of a chaos run: for each consumer lease taken during the faults (the taker's log
 * line), the time to the consumer's first event applied afterwards — the first inbox row (`handled_on`)
 * past the take and before the next take, the ack following its commit. A consumer with nothing to read
 * counts its idle time too, so the figures are upper bounds; under the stories' load the access and
 * orders consumers read something every few hundred ms.
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { contextOf, Contexts, eventSubject, type AggregateType } from "../../contracts/index.js";
import type { Database } from "../../src/persistence/index.js";
import type { Fault } from "./faults.js";
import type { Take } from "./log-book.js";

/** One takeover measured. */
export interface Takeover extends Take {
  /** The fault it followed (within 30 s before the take), or "rebalance" (a restarted instance's return). */
  cause: string;
  /** Take → first event applied (ms); undefined when none was applied before the next take. */
  firstAppliedMs: number | undefined;
}

/** Median and maximum of `xs` (undefined when empty). */
export function medianMax(xs: number[]): { n: number; median: number | undefined; max: number | undefined } {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, median: s.length === 0 ? undefined : s[Math.floor((s.length - 1) / 2)], max: s.at(-1) };
}

/** Measures every take at or after `from` (ms since the epoch). */
export async function measureTakeovers(db: Database, takes: Take[], faults: Fault[], from: number): Promise<Takeover[]> {
  const out: Takeover[] = [];
  const sorted = [...takes].sort((a, b) => a.at - b.at);
  for (const [i, t] of sorted.entries()) {
    if (t.at < from) continue;
    const next = sorted.slice(i + 1).find((x) => x.consumer === t.consumer);
    const row = await db.execute<{ handled_on: string } | undefined>(
      "select min(handled_on) as handled_on from consumer_inbox where consumer = ? and handled_on > ? and handled_on < ?",
      [t.consumer, new Date(t.at).toISOString(), new Date(next?.at ?? Date.now() + 3_600_000).toISOString()],
      "get",
    );
    // A NATS node's kill moves no lease (they are in the database): a take is an instance fault's, or a rebalance.
    const fault = [...faults].reverse().find((f) => f.kind !== "natskill" && f.at <= t.at && t.at - f.at < 30_000);
    out.push({ ...t, cause: fault ? `${fault.kind} ${fault.instance}` : "rebalance", firstAppliedMs: row?.handled_on ? Date.parse(row.handled_on) - t.at : undefined });
  }
  return out;
}

/**
 * For each NATS node killed (CHAOS_NATS=r3), each consumer's time from the kill to its first event applied
 * afterwards (its leases stay put: the wait is the stream and consumer leaders' elections and the readers'
 * pulls coming back), as takeovers of cause `natskill <node>`, so the table shows them beside the others.
 * Idle time counts too: upper bounds, like the takes'.
 */
export async function measureNatsKills(db: Database, faults: Fault[]): Promise<Takeover[]> {
  const consumers = (await db.execute<{ consumer: string }[]>("select distinct consumer from consumer_inbox order by consumer", [], "all")).map((r) => r.consumer);
  const out: Takeover[] = [];
  for (const f of faults.filter((x) => x.kind === "natskill")) {
    for (const consumer of consumers) {
      const row = await db.execute<{ handled_on: string } | undefined>("select min(handled_on) as handled_on from consumer_inbox where consumer = ? and handled_on > ?", [consumer, new Date(f.at).toISOString()], "get");
      out.push({ consumer, instance: f.instance, epoch: 0, at: f.at, cause: `natskill ${f.instance}`, firstAppliedMs: row?.handled_on ? Date.parse(row.handled_on) - f.at : undefined });
    }
  }
  return out;
}

/** One consumer's read model after one NATS node's kill: how stale it got. */
export interface Staleness {
  consumer: string;
  cause: string;
  /** Events applied after the kill, within {@link STALENESS_WINDOW_MS} and before the next NATS node's kill. */
  applied: number;
  /** The longest any of them waited, from its `occurred_on` to its inbox row's `handled_on` (ms); undefined when none. */
  worstMs: number | undefined;
  /** That event, and when it occurred and was applied. */
  worst?: { eventId: string; stream: string; subject: string; occurredOn: string; handledOn: string };
  /** Of `worstMs`, the part before JetStream stored the event (the relay's), when the stream told ({@link splitAtStream}). */
  beforeStreamMs?: number;
}

/** How long after a kill the staleness looks ({@link measureStaleness}). */
export const STALENESS_WINDOW_MS = 60_000;

/**
 * For each NATS node killed, each consumer's worst wait between an event's occurrence and its application
 * over the minute after the kill: what a reader of its read model saw. Unlike {@link measureNatsKills}'
 * first event applied, a consumer whose events are rare (security reads e-mail changes only) shows no wait
 * for events that did not exist; an event that waited out the elections and the pulls' expiry shows it.
 */
export async function measureStaleness(db: Database, faults: Fault[]): Promise<Staleness[]> {
  const out: Staleness[] = [];
  const kills = faults.filter((x) => x.kind === "natskill").sort((a, b) => a.at - b.at);
  for (const [k, f] of kills.entries()) {
    const until = Math.min(f.at + STALENESS_WINDOW_MS, kills[k + 1]?.at ?? Infinity);
    const rows = await db.execute<{ consumer: string; handled_on: string; occurred_on: string; event_id: string; event_type: string; aggregate_type: AggregateType; aggregate_id: string }[]>(
      "select i.consumer, i.handled_on, e.occurred_on, e.event_id, e.event_type, e.aggregate_type, e.aggregate_id from consumer_inbox i join nerve_events e on e.event_id = i.event_id where i.handled_on > ? and i.handled_on <= ?",
      [new Date(f.at).toISOString(), new Date(until).toISOString()],
      "all",
    );
    const by = new Map<string, Staleness>();
    for (const r of rows) {
      const s = by.get(r.consumer) ?? { consumer: r.consumer, cause: `natskill ${f.instance}`, applied: 0, worstMs: undefined };
      const waited = Date.parse(r.handled_on) - Date.parse(r.occurred_on);
      s.applied++;
      if (s.worstMs === undefined || waited > s.worstMs) {
        s.worstMs = waited;
        const context = contextOf(r.aggregate_type);
        s.worst = { eventId: r.event_id, stream: Contexts[context].stream, subject: eventSubject(context, r.event_type, r.aggregate_id), occurredOn: r.occurred_on, handledOn: r.handled_on };
      }
      by.set(r.consumer, s);
    }
    out.push(...[...by.values()].sort((a, b) => a.consumer.localeCompare(b.consumer)));
  }
  return out;
}

/** A table of the takeovers by fault kind: count, applied-after, median and max, one line each. */
export function takeoverTable(takeovers: Takeover[]): string {
  const groups = new Map<string, Takeover[]>();
  for (const t of takeovers) {
    const kind = t.cause.split(" ")[0]!;
    groups.set(kind, [...(groups.get(kind) ?? []), t]);
  }
  const lines = ["cause        takes  applied  median ms  max ms"];
  // "all" is the takes: a NATS node's kill (natskill) takes no lease.
  for (const [kind, ts] of [...groups, ["all", takeovers.filter((t) => !t.cause.startsWith("natskill"))] as const]) {
    const m = medianMax(ts.flatMap((t) => (t.firstAppliedMs === undefined ? [] : [t.firstAppliedMs])));
    lines.push(`${kind.padEnd(12)} ${String(ts.length).padStart(5)}  ${String(m.n).padStart(7)}  ${String(m.median ?? "-").padStart(9)}  ${String(m.max ?? "-").padStart(6)}`);
  }
  return lines.join("\n");
}

/**
 * Sets each measure's {@link Staleness.beforeStreamMs}: when JetStream stored its worst event (the message's
 * timestamp, found by reading the event's subject through an ordered consumer until its Nats-Msg-Id). Tells
 * a relay that waited out the stream's election from a consumer that read late.
 */
export async function splitAtStream(nc: NatsConnection, measures: Staleness[]): Promise<void> {
  const js = jetstream(nc);
  for (const m of measures) {
    if (!m.worst) continue;
    const c = await js.consumers.get(m.worst.stream, { filter_subjects: m.worst.subject });
    try {
      for (;;) {
        const msg = await c.next({ expires: 2_000 });
        if (!msg) break;
        if (msg.headers?.get("Nats-Msg-Id") === m.worst.eventId) {
          m.beforeStreamMs = Math.round(msg.info.timestampNanos / 1e6 - Date.parse(m.worst.occurredOn));
          break;
        }
        if (msg.info.pending === 0) break;
      }
    } finally {
      await c.delete().catch(() => false);
    }
  }
}
