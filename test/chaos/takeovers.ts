/**
 * Consumer takeovers of a chaos run: for each consumer lease taken during the faults (the taker's log
 * line), the time to the consumer's first event applied afterwards — the first inbox row (`handled_on`)
 * past the take and before the next take, the ack following its commit. A consumer with nothing to read
 * counts its idle time too, so the figures are upper bounds; under the stories' load the access and
 * orders consumers read something every few hundred ms.
 */
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
