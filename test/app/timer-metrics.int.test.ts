/**
 * The durable timers on /metrics: fires and failures by kind (failures for now apart), the overdue
 * timers of the partitions the instance owns and the oldest one's age (what NerveTimersOverdue reads),
 * and the due timers of kinds the version does not know. Before, none of it was exported: a timer that
 * failed for now at every poll was a warning in the log, and timers could stay overdue for good with
 * every figure green.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import { SoleOwnership, clusterEntities, partitionOf } from "../../src/cluster/index.js";
import type { Database } from "../../src/persistence/index.js";
import type { CommandBus } from "../../src/runtime/index.js";
import { TimerService, timerOp, type TimerKind } from "../../src/timers/index.js";
import { registerTimerMetrics } from "../../src/app/timer-metrics.js";
import { bothDatabases, captureLog, postgresAvailable } from "../support/index.js";

const available = await postgresAvailable();

const expire: TimerKind = { context: "access", aggregateType: "AccessRecord", kind: "expire", fire: () => [], deadline: () => null };
const NOW = new Date("2026-06-01T00:00:00.000Z");
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000).toISOString();

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** The ownership of the even partitions only, as one of two instances holds them. */
class EvenPartitions extends SoleOwnership {
  /** Set to hold none (every partition handed off). */
  none = false;
  override fence(partition: number) {
    return partition % 2 === 0 && !this.none ? super.fence(partition) : undefined;
  }
  override held() {
    return this.none ? [] : super.held().filter((p) => p % 2 === 0);
  }
}

/** `n` aggregate ids whose partitions are even (`even`) or odd. */
function ids(prefix: string, n: number, even = true): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if ((partitionOf(`${prefix}${i}`) % 2 === 0) === even) out.push(`${prefix}${i}`);
  return out;
}

/** Each series of the registry's exposition, by name and labels as written (`name{a="b"}`). */
async function scrape(registry: Registry): Promise<Map<string, number>> {
  const text = await registry.metrics();
  return new Map([...text.matchAll(/^(nerve_timers_\S+) (\S+)$/gm)].map(([, series, v]) => [series!, Number(v)]));
}

const dialects = bothDatabases(cleanups, available, clusterEntities);

describe.each(dialects)("timer metrics (%s)", (_name, runs, open) => {
  it.skipIf(!runs)("count fires and failures by kind, and show the overdue timers of the partitions held and how late the oldest is", async () => {
    const db: Database = await open();
    const write = async (k: { aggregateType: string; kind: string }, id: string, due: string) => {
      const op = timerOp(k, id, due);
      await db.execute(op.sql, op.params, "run");
    };
    const [fine, busy, broken, unknown] = [ids("fine", 3), ids("busy", 2), ids("broken", 1), ids("next", 4)];
    for (const id of fine) await write(expire, id, minutesAgo(1));
    for (const id of busy) await write(expire, id, minutesAgo(10));
    for (const id of broken) await write(expire, id, minutesAgo(5));
    // Of the next release's kind, due 20 minutes ago: the oldest overdue once the rest have fired.
    for (const id of unknown) await write({ aggregateType: "Order", kind: "timeout" }, id, minutesAgo(20));
    // Another instance's partitions: not this one's to fire or to count, however late.
    for (const id of ids("theirs", 5, false)) await write(expire, id, minutesAgo(60));
    // Not due yet.
    await write(expire, ids("later", 1)[0]!, "2026-06-01T01:00:00.000Z");

    const bus = {
      executeInternal: async (_c: string, id: string) => {
        if (id.startsWith("busy")) throw Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
        if (id.startsWith("broken")) throw new Error(`${id} cannot be loaded`);
      },
      readState: async () => ({ state: null, version: 0 }),
    } as unknown as CommandBus;
    const log = captureLog("warn");
    const ownership = new EvenPartitions("even");
    const timers = new TimerService({ db, bus, logger: log.logger, kinds: [expire], ownership, clock: () => NOW });
    const registry = new Registry();
    registerTimerMetrics(registry, timers);

    const before = await scrape(registry);
    expect(before.get("nerve_timers_overdue")).toBe(3 + 2 + 1 + 4);
    expect(before.get("nerve_timers_oldest_overdue_age_seconds")).toBe(20 * 60);

    for (let i = 0; i < 3; i++) await timers.poll();
    const after = await scrape(registry);
    expect(after.get('nerve_timers_fired_total{kind="AccessRecord/expire"}')).toBe(3);
    expect(after.get('nerve_timers_failures_total{kind="AccessRecord/expire",transient="true"}')).toBe(2 * 3);
    // The broken one backed off by 15 s after the first poll: not due again at the next two (same clock).
    expect(after.get('nerve_timers_failures_total{kind="AccessRecord/expire",transient="false"}')).toBe(1);
    expect(after.get('nerve_timers_unknown_kind_due{kind="Order/timeout"}')).toBe(4);
    // The overdue gauges read once a second at most: a registry of its own reads them afresh.
    const fresh = new Registry();
    registerTimerMetrics(fresh, timers);
    const now = await scrape(fresh);
    // Still due: the two failing for now and the four of an unknown kind; the oldest is of those.
    expect(now.get("nerve_timers_overdue")).toBe(2 + 4);
    expect(now.get("nerve_timers_oldest_overdue_age_seconds")).toBe(20 * 60);
    // The broken one is not overdue (its due time moved on with its back-off): the failing gauges say it.
    expect(now.get("nerve_timers_failing")).toBe(1);
    expect(now.get("nerve_timers_failing_oldest_age_seconds")).toBe(0);
    // Six failures for now, one warning.
    expect(log.lines.filter((l) => l.msg?.includes("failed for now"))).toHaveLength(1);

    // Every partition handed off: the unknown kinds' count is no longer this instance's (ops audit: it kept its last).
    ownership.none = true;
    await timers.poll();
    const handedOff = await scrape(registry);
    expect(handedOff.get('nerve_timers_unknown_kind_due{kind="Order/timeout"}')).toBeUndefined();
    // Nor is the broken one this instance's to count as failing: its new owner fires it (or counts it).
    expect(handedOff.get("nerve_timers_failing")).toBe(0);
  });
});

describe("timer metrics without partitions", () => {
  it("show nothing overdue on an instance that owns none (no commands role), without asking the database", async () => {
    const none = new (class extends SoleOwnership {
      override held = () => [];
    })("none");
    const db = { query: () => Promise.reject(new Error("asked the database")) } as unknown as Database;
    const timers = new TimerService({ db, bus: {} as CommandBus, logger: captureLog().logger, kinds: [expire], ownership: none });
    const registry = new Registry();
    registerTimerMetrics(registry, timers);
    const scraped = await scrape(registry);
    expect(scraped.get("nerve_timers_overdue")).toBe(0);
    expect(scraped.get("nerve_timers_oldest_overdue_age_seconds")).toBe(0);
  });
});
