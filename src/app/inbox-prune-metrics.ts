/** The consumer inbox prune's figures on /metrics (src/consumers/inbox-prune.ts), read when Prometheus scrapes. */
import { Counter, Gauge, type Registry } from "prom-client";
import type { InboxPruneStats } from "../consumers/index.js";

/** Registers the prune's totals (counters) and its latest pass's wall time (a gauge). */
export function registerInboxPruneMetrics(registry: Registry, stats: InboxPruneStats): void {
  // Counters set from the prune's own totals at scrape time: reset, then brought to the total.
  new Counter({
    name: "nerve_consumer_inbox_pruned_rows_total",
    help: "Projections' inbox rows deleted past NERVE_INBOX_RETENTION_DAYS, by consumer",
    labelNames: ["consumer"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [consumer, n] of stats.deleted) this.inc({ consumer }, n);
    },
  });
  new Counter({
    name: "nerve_consumer_inbox_prune_passes_total",
    help: "Passes of the consumer inbox prune (every ten minutes, one at a time)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats.passes);
    },
  });
  new Gauge({
    name: "nerve_consumer_inbox_prune_last_pass_seconds",
    help: "Wall time of the latest pass of the consumer inbox prune, its pauses between slices included",
    registers: [registry],
    collect() {
      this.set(stats.lastPassMs / 1000);
    },
  });
}
