/** The service's own figures on the gateway's /metrics: command results, actors, group commit, outbox, consumer lag. */
import { readFile } from "node:fs/promises";
import { Gauge, type Registry } from "prom-client";
import type { Api } from "../api/index.js";
import type { ConsumerLag, ConsumerManager } from "../consumers/index.js";
import type { OutboxRelay } from "../outbox/index.js";
import type { CheckpointStats, GroupCommitWriter, QueryGateStats, QueryThreadStats, Repository, WorkerHeap } from "../persistence/index.js";
import type { ActorSystem } from "../runtime/index.js";
import { backgroundFailures } from "../supervision/index.js";
import { heapAfterMajorGc } from "./gc-floor.js";
import { ScrapedCounter } from "./scraped-counter.js";
import type { LeaseStats, Ownership } from "../cluster/index.js";

/** What the service metrics read, at scrape time. */
export interface ServiceMetricSources {
  /** Absent without the `commands` role. */
  api: Api | undefined;
  system: ActorSystem;
  writer: GroupCommitWriter;
  relay: OutboxRelay;
  repo: Repository;
  consumers: ConsumerManager;
  /** A SQLite file's WAL checkpoints; absent on PostgreSQL. */
  checkpoints?: CheckpointStats | undefined;
  /** A SQLite file's query thread (the read models' queries); absent on PostgreSQL. */
  queries?: QueryThreadStats | undefined;
  /** PostgreSQL's query gate (the read models' queries on a pool of their own); absent on SQLite. */
  queryGate?: QueryGateStats | undefined;
  /** That thread's V8 heap (undefined while none runs); absent on PostgreSQL. */
  queryThreadHeap?: (() => Promise<WorkerHeap | undefined>) | undefined;
  /** Which partitions this instance owns: the outbox rows it counts are theirs (absent: every row). */
  ownership?: Ownership;
  /** Figures of the lease groups this instance takes part in (several instances on PostgreSQL), by group. */
  leases?: Record<string, LeaseStats | undefined>;
}

/** Registers gauges and counters that read the service's figures when Prometheus scrapes (nothing on the hot path). */
export function registerServiceMetrics(registry: Registry, s: ServiceMetricSources): void {
  // Both lag gauges read the same consumer infos: one round of JetStream requests per scrape, all at
  // once. A durable whose read failed keeps its series' last values (the gauges keep what is not set),
  // the others are fresh; the failures are counted, by consumer and stream.
  const lagReadFailures = new Map<string, { consumer: string; stream: string; n: number }>();
  let lag: { at: number; value: Promise<ConsumerLag[]> } | undefined;
  const lagNow = () => {
    if (!lag || Date.now() - lag.at > 1000) {
      lag = {
        at: Date.now(),
        value: s.consumers.lagSettled().then(({ lag: read, failed }) => {
          for (const { consumer, stream } of failed) {
            const key = `${consumer} ${stream}`;
            const f = lagReadFailures.get(key) ?? { consumer, stream, n: 0 };
            f.n++;
            lagReadFailures.set(key, f);
          }
          return read;
        }, () => []),
      };
    }
    return lag.value;
  };
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge<string>) => void | Promise<void>) =>
    new Gauge({ name, help, labelNames, registers: [registry], collect() { return collect(this); } });
  // Every `_total` is a total that only grows: exposed as a counter (rate() and promtool expect one).
  const counter = (name: string, help: string, labelNames: string[], collect: (c: ScrapedCounter) => void | Promise<void>) =>
    new ScrapedCounter({ name, help, labelNames, collect }).register(registry);

  counter("nerve_requests_total", "Command and query requests answered, by result (ok or the contract's error code)", ["result"], (g) => {
    if (!s.api) return;
    g.set({ result: "ok" }, s.api.stats.ok);
    for (const [code, n] of Object.entries(s.api.stats.failed)) g.set({ result: code }, n);
    g.set({ result: "forwarded" }, s.api.stats.forwarded);
  });
  counter("nerve_requests_overloaded_total", "Requests answered unavailable at once because the instance had its most in hand (NERVE_MAX_IN_HAND, NERVE_MAX_IN_HAND_BYTES); also counted in nerve_requests_total{result=\"unavailable\"}", [], (g) => {
    if (s.api) g.set({}, s.api.stats.overloaded);
  });
  gauge("nerve_requests_in_hand", "Command and query requests this instance is handling now (the most: NERVE_MAX_IN_HAND)", [], (g) => {
    if (s.api) g.set(s.api.stats.inHand.requests);
  });
  counter("nerve_background_failures_total", "Failures of background tasks (consumer loops, polls, dead-lettering, unhandled rejections), each logged and retried", ["task"], (g) => {
    for (const [task, n] of backgroundFailures) g.set({ task }, n);
  });
  gauge("nerve_actors_live", "Live actors in memory", [], (g) => g.set(s.system.size));
  const afterGc = heapAfterMajorGc();
  gauge("nerve_heap_used_after_major_gc_bytes", "Heap used right after the latest major garbage collection (0 before the first): the live heap, without the garbage that piles up between collections", [], (g) => g.set(afterGc.heapUsed));
  gauge("nerve_process_resident_memory_split_bytes", "Resident memory by kind (Linux): anon (heaps: V8's, malloc's, the worker's), file (code, mapped files), shmem (the SQLite WAL index)", ["kind"], async (g) => {
    const split = await residentSplit();
    if (split) for (const [kind, bytes] of Object.entries(split)) g.set({ kind }, bytes);
  });
  const heapOf = (read: () => Promise<WorkerHeap | undefined> | undefined) => async (g: Gauge<"state" | "space">) => {
    const heap = await read();
    if (!heap) return;
    g.set({ state: "total", space: "all" }, heap.heapTotal);
    g.set({ state: "used", space: "all" }, heap.heapUsed);
    for (const [space, v] of Object.entries(heap.spaces)) {
      g.set({ state: "total", space }, v.size);
      g.set({ state: "used", space }, v.used);
    }
  };
  gauge("nerve_sqlite_writer_heap_bytes", "The SQLite write worker thread's V8 heap (not in nodejs_heap_size_*, which are the main thread's), committed and used, in all and by space", ["state", "space"], heapOf(() => s.writer.sqliteWorker?.heap()));
  counter("nerve_actor_rejections_total", "Commands refused at once because a mailbox was full", [], (g) => g.set(s.system.stats.rejected));
  counter("nerve_group_commits_total", "Group-commit transactions", [], (g) => g.set(s.writer.stats.transactions));
  counter("nerve_group_commit_writes_total", "Aggregate writes committed", [], (g) => g.set(s.writer.stats.writes));
  counter("nerve_outbox_rows_deleted_total", "Published outbox rows deleted, most within the next group commit", [], (g) => g.set(s.writer.stats.outboxRowsDeleted));
  counter("nerve_group_commit_admission_waits_total", "Group commits that waited for the outbox relay's backlog or a projection's to shrink", [], (g) => g.set(s.writer.stats.admissionWaits));
  counter("nerve_group_commit_admission_wait_seconds_total", "Time group commits waited for the outbox relay's backlog or a projection's", [], (g) => g.set(s.writer.stats.admissionWaitMs / 1000));
  counter("nerve_consumer_backlog_admission_waits_total", "Group commits that waited for a projection of this process more than NERVE_CONSUMER_LAG_LIMIT events behind", [], (g) => g.set(s.consumers.backlogWaits));
  const cp = s.checkpoints;
  if (cp) {
    counter("nerve_sqlite_checkpoints_total", "WAL checkpoints run beside the writers (automatic checkpoints are off on the connections that write), by mode", ["mode"], (g) => {
      g.set({ mode: "passive" }, cp.runs - cp.restarts);
      g.set({ mode: "restart" }, cp.restarts);
    });
    counter("nerve_sqlite_checkpoint_restarts_blocked_total", "WAL RESTART checkpoints SQLite reported blocked (a writer or an older snapshot's reader outlasted the busy timeout): the WAL does not start over and grows until one completes", [], (g) => g.set(cp.restartsBlocked));
    counter("nerve_sqlite_checkpoint_failures_total", "WAL checkpoints that failed (retried at the next tick)", [], (g) => g.set(cp.failures));
    counter("nerve_sqlite_checkpoint_threads_started_total", "Checkpoint threads started: the first, and one for each that died", [], (g) => g.set(cp.threadStarts));
    gauge("nerve_sqlite_checkpoint_longest_seconds", "The longest WAL checkpoint so far", [], (g) => g.set(cp.longestMs / 1000));
    gauge("nerve_sqlite_wal_frames", "Frames in the SQLite WAL at the latest checkpoint, and of them copied into the database", ["state"], (g) => {
      g.set({ state: "total" }, cp.walFrames);
      g.set({ state: "checkpointed" }, cp.checkpointedFrames);
    });
  }
  const q = s.queries;
  if (q) {
    counter("nerve_sqlite_queries_total", "Read models' queries of the query thread (SearchCatalog, CourseStats, …, off the event loop): answered, failed, refused (too many waiting: answered unavailable)", ["outcome"], (g) => {
      g.set({ outcome: "ok" }, q.queries - q.failures);
      g.set({ outcome: "failed" }, q.failures);
      g.set({ outcome: "refused" }, q.refused);
    });
    counter("nerve_sqlite_query_thread_starts_total", "Query threads started: the first, and one after each that ended", [], (g) => g.set(q.starts));
    counter("nerve_sqlite_query_thread_collections_total", "Full collections the query thread ran itself, once idle, when its V8 heap had grown 8 MiB past what the last one left", [], (g) => g.set(q.collections));
    const heap = s.queryThreadHeap;
    if (heap) gauge("nerve_sqlite_query_thread_heap_bytes", "The query thread's V8 heap (not in nodejs_heap_size_*), committed and used, in all and by space; none before the first query", ["state", "space"], heapOf(heap));
  }
  const gate = s.queryGate;
  if (gate) {
    counter("nerve_pg_queries_total", "Read models' queries on PostgreSQL's query connections (SearchCatalog, CourseStats, …; NERVE_PG_QUERIES at once): answered, failed, cancelled (cut off by statement_timeout, NERVE_PG_QUERY_TIMEOUT_MS: answered unavailable), refused (64 waiting, or no connection free within 3 s: answered unavailable)", ["outcome"], (g) => {
      g.set({ outcome: "ok" }, gate.queries - gate.failures);
      g.set({ outcome: "failed" }, gate.failures - gate.cancelled);
      g.set({ outcome: "cancelled" }, gate.cancelled);
      g.set({ outcome: "refused" }, gate.refused);
    });
  }
  gauge("nerve_outbox_backlog", "Committed events handed to the relay and not yet acknowledged by JetStream (0 while it reads the table)", [], (g) => g.set(s.relay.backlog));
  counter("nerve_outbox_published_total", "Events the relay published to JetStream", [], (g) => g.set(s.relay.stats.published));
  // Only the partitions held now, as the relay reads them: instances sharing one database each count
  // their own share, so summing them gives the table, and one without the commands role holds none
  // and reports 0 without asking the database (its relay never runs, so a shared total there would be
  // pending rows it never publishes). A count the query thread refused (it is busy) leaves the last
  // value: a scrape must not fail for it.
  gauge("nerve_outbox_pending", "Committed events of the partitions this instance owns now, not yet acknowledged by JetStream (0 when it owns none)", [], async (g) => {
    const n = await s.repo.outboxPending(s.ownership?.held()).catch(() => undefined);
    if (n !== undefined) g.set(n);
  });
  // One row that never goes out (a subject no stream takes, a stream that refuses it) hardly moves the
  // pending count among thousands that do: its age does. Same partitions, and a failed read keeps the
  // last value, as nerve_outbox_pending.
  gauge("nerve_outbox_oldest_pending_age_seconds", "Age of the oldest committed event of the partitions this instance owns now not yet acknowledged by JetStream (0 when there is none)", [], async (g) => {
    const at = await s.repo.outboxOldestAt(s.ownership?.held()).then((at) => at ?? Date.now(), () => undefined);
    if (at !== undefined) g.set(Math.max(0, Date.now() - at) / 1000);
  });
  counter("nerve_outbox_publish_failures_total", "Failed publishes, stream lookups and stream probes of the outbox relay (each retried; the failure that holds a stream or an aggregate back is logged)", [], (c) => c.set(s.relay.stats.failures));
  gauge("nerve_outbox_held_streams", "Streams whose events the outbox relay holds back in the outbox after a failure (probed with back-off; the other streams' events go on)", [], (g) => g.set(s.relay.held.streams));
  gauge("nerve_outbox_held_aggregates", "Aggregates whose events the outbox relay holds back behind a row JetStream refused (too large, …), in order (retried with back-off)", [], (g) => g.set(s.relay.held.aggregates));
  counter("nerve_outbox_gaps_total", "Outbox rows the relay's verification found missing from the stream below their aggregate's last version, published then out of order (each logged as an error)", [], (c) => c.set(s.relay.stats.gaps));
  gauge("nerve_consumer_pending", "Events a durable consumer has not yet been delivered", ["consumer", "stream"], async (g) => {
    for (const l of await lagNow()) g.set({ consumer: l.consumer, stream: l.stream }, l.pending);
  });
  gauge("nerve_consumer_ack_pending", "Events delivered to a durable consumer and not yet acknowledged", ["consumer", "stream"], async (g) => {
    for (const l of await lagNow()) g.set({ consumer: l.consumer, stream: l.stream }, l.ackPending);
  });
  counter("nerve_consumer_lag_read_failures_total", "Reads of a durable consumer's lag (its consumer info) that failed at a scrape: its nerve_consumer_pending and nerve_consumer_ack_pending kept their last values", ["consumer", "stream"], async (c) => {
    await lagNow();
    for (const f of lagReadFailures.values()) c.set({ consumer: f.consumer, stream: f.stream }, f.n);
  });
  gauge("nerve_consumer_dead_letters", "Events a consumer gave up on", ["consumer"], async (g) => {
    // A count that failed (the query thread busy, the database away) keeps the last values: 0 for
    // every consumer would resolve NerveDeadLetters, which would fire again at the next good count.
    const counts = await s.consumers.deadLetters.countByConsumer().catch(() => undefined);
    if (!counts) return;
    for (const name of s.consumers.runners.keys()) g.set({ consumer: name }, counts.get(name) ?? 0);
  });
  counter("nerve_consumer_retries_total", "Attempts of a failed event again, in place and before any later event of its stream (transient failures are retried for as long as they last)", ["consumer"], (g) => {
    for (const [name, r] of s.consumers.runners) g.set({ consumer: name }, r.stats.retries);
  });
  counter("nerve_consumer_holds_total", "Times a consumer held back what arrived, unapplied, while another reader's deliveries of its durable were out (after a take, or a gap in the deliveries), to apply it all in stream order once they were back", ["consumer"], (c) => {
    for (const [name, r] of s.consumers.runners) c.set({ consumer: name }, r.stats.heldBack);
  });
  counter("nerve_consumer_hold_timeouts_total", "Holds of nerve_consumer_holds_total that ran out (twice ack_wait) before the other reader's deliveries came back: what had arrived was applied without them, which may then come in after newer events of their aggregates", ["consumer"], (c) => {
    for (const [name, r] of s.consumers.runners) c.set({ consumer: name }, r.stats.heldBackTimedOut);
  });
  counter("nerve_consumer_takes_total", "Leases of a durable consumer this instance took, from a release or after a crash (each waits for what its former holder left out: nerve_consumer_take_wait_seconds_total)", ["consumer"], (c) => {
    for (const [name, t] of s.consumers.takes) c.set({ consumer: name }, t.takes);
  });
  counter("nerve_consumer_take_wait_seconds_total", "Time consumers taken here waited before their first pull: for a former holder's open pull request to end, or for deliveries it left unacknowledged to be handed back (NAKs) or, failing that, due again (twice ack_wait a take at most)", ["consumer"], (c) => {
    for (const [name, t] of s.consumers.takes) c.set({ consumer: name }, t.waitedMs / 1000);
  });
  gauge("nerve_partitions_owned", "Partitions (of 64) this instance owns now: all of them alone on SQLite, its share when several instances run", [], (g) => {
    if (s.ownership) g.set(s.ownership.held().length);
  });
  counter("nerve_lease_changes_total", "Leases taken (acquired), handed off (released) or lapsed (lost), by group (partitions, consumers): hand-offs between instances", ["group", "change"], (g) => {
    for (const [group, stats] of Object.entries(s.leases ?? {})) {
      if (!stats) continue;
      for (const change of ["acquired", "released", "lost"] as const) g.set({ group, change }, stats[change]);
    }
  });
}

/** RssAnon, RssFile and RssShmem of /proc/self/status in bytes; undefined where there is no such file (not Linux). */
export async function residentSplit(status?: string): Promise<{ anon: number; file: number; shmem: number } | undefined> {
  const text = status ?? (await readFile("/proc/self/status", "utf8").catch(() => undefined));
  if (text === undefined) return undefined;
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const anon = kib("RssAnon");
  const file = kib("RssFile");
  const shmem = kib("RssShmem");
  return anon === undefined || file === undefined || shmem === undefined ? undefined : { anon, file, shmem };
}
