/** The durable timers' figures on /metrics (src/timers/), read when Prometheus scrapes. */
import { Gauge, type Registry } from "prom-client";
import type { OverdueTimers, TimerService } from "../timers/index.js";
import { ScrapedCounter } from "./scraped-counter.js";

/**
 * Registers the timers' totals by kind (counters), the overdue timers of the partitions this instance
 * owns now and, from the latest look, the due timers of kinds this version does not know (gauges).
 */
export function registerTimerMetrics(registry: Registry, timers: TimerService): void {
  new ScrapedCounter({
    name: "nerve_timers_fired_total",
    help: "Durable timers fired (their operation run on the aggregate, whether or not it emitted), by kind (AccessRecord/expire)",
    labelNames: ["kind"],
    collect: (c) => {
      for (const [kind, n] of timers.stats.fired) c.set({ kind }, n);
    },
  }).register(registry);
  new ScrapedCounter({
    name: "nerve_timers_failures_total",
    help: "Durable timers whose fire failed, by kind: transient=\"true\" for now (an outage, a full mailbox, a partition's fence: due again at the next poll, logged at most once a minute), \"false\" for good (tried again after a back-off of 15 s to 15 min; also in nerve_background_failures_total{task=\"timers\"})",
    labelNames: ["kind", "transient"],
    collect: (c) => {
      for (const [kind, f] of timers.stats.failures) {
        c.set({ kind, transient: "true" }, f.transient);
        c.set({ kind, transient: "false" }, f.permanent);
      }
    },
  }).register(registry);
  // Both gauges read one query a scrape. A read that failed (the query thread busy, the database away)
  // keeps their last values: a scrape must not fail for it.
  let read: { at: number; value: Promise<OverdueTimers | undefined> } | undefined;
  const overdueNow = () => {
    if (!read || Date.now() - read.at > 1000) read = { at: Date.now(), value: timers.overdue().catch(() => undefined) };
    return read.value;
  };
  new Gauge({
    name: "nerve_timers_overdue",
    help: "Durable timers of the partitions this instance owns now that are due and not fired, of every kind (counted up to 10,000; 0 when it owns none)",
    registers: [registry],
    async collect() {
      const o = await overdueNow();
      if (o) this.set(o.count);
    },
  });
  new Gauge({
    name: "nerve_timers_oldest_overdue_age_seconds",
    help: "How long ago the oldest due and not fired durable timer of the partitions this instance owns now fell due (0 when there is none)",
    registers: [registry],
    async collect() {
      const o = await overdueNow();
      if (o) this.set(o.oldestAgeMs / 1000);
    },
  });
  new Gauge({
    name: "nerve_timers_failing",
    help: "Durable timers whose last fire here failed for good (not for now) and that have not fired since: each is tried again after a back-off of 15 s to 15 min, its due time moved on, so it is not counted in nerve_timers_overdue (since this process started)",
    registers: [registry],
    collect() {
      this.set(timers.failing().count);
    },
  });
  new Gauge({
    name: "nerve_timers_failing_oldest_age_seconds",
    help: "How long ago the oldest of nerve_timers_failing first failed in its spell (0 when none fails)",
    registers: [registry],
    collect() {
      this.set(timers.failing().oldestAgeMs / 1000);
    },
  });
  new Gauge({
    name: "nerve_timers_unknown_kind_due",
    help: "Due durable timers of kinds this version does not know (left for an instance that does), of the partitions it owned at its latest look (once a minute; counted up to 10,000), by kind",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      // Kinds no longer seen go: a gauge keeps what is not set again.
      this.reset();
      for (const [kind, n] of timers.unknownDue) this.set({ kind }, n);
    },
  });
}
