/** The consumer inbox prune's figures on /metrics (src/consumers/inbox-prune.ts), read when Prometheus scrapes. */
import { Gauge, type Registry } from "prom-client";
import type { InboxPruneStats } from "../consumers/index.js";
import { ScrapedCounter } from "./scraped-counter.js";

/** Registers the prune's totals (counters) and its latest pass's wall time (a gauge). */
export function registerInboxPruneMetrics(registry: Registry, stats: InboxPruneStats): void {
  new ScrapedCounter({
    name: "nerve_consumer_inbox_pruned_rows_total",
    help: "Projections' inbox rows deleted past NERVE_INBOX_RETENTION_DAYS, by consumer",
    labelNames: ["consumer"],
    collect: (c) => {
      for (const [consumer, n] of stats.deleted) c.set({ consumer }, n);
    },
  }).register(registry);
  new ScrapedCounter({
    name: "nerve_consumer_inbox_prune_passes_total",
    help: "Passes of the consumer inbox prune (every ten minutes, one at a time)",
    collect: (c) => c.set(stats.passes),
  }).register(registry);
  new Gauge({
    name: "nerve_consumer_inbox_prune_last_pass_seconds",
    help: "Wall time of the latest pass of the consumer inbox prune, its pauses between slices included",
    registers: [registry],
    collect() {
      this.set(stats.lastPassMs / 1000);
    },
  });
}
