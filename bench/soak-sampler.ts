/** Reads the service's figures for the soak: its Prometheus /metrics, the SQLite WAL file, and CPU from /proc. */
import { readFile, stat } from "node:fs/promises";
import { percentile } from "./percentiles.js";
import type { LoadMinute } from "./soak-load.js";
import type { SoakMinute } from "./soak-verdict.js";
import { processCpuMs } from "./thread-cpu.js";

/** One reading of the service. */
export interface ServiceSample {
  /** ms since the open loop started. */
  atMs: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Heap used right after the service's latest major collection (0 before the first, or from a service without that gauge). */
  heapAfterGcBytes: number;
  /** p99 of the event-loop delay since the previous scrape (prom-client resets its histogram on every scrape). */
  loopP99Ms: number;
  openFds: number;
  walBytes: number;
  /** Cumulative WAL RESTART checkpoints, and of them those SQLite reported blocked (0 from a service without the counters). */
  walRestarts: number;
  walRestartsBlocked: number;
  outboxPending: number;
  /** Undelivered events by durable consumer, summed and the worst one. */
  lagSum: number;
  lagMax: number;
  /** Delivered but unacknowledged events, summed over the consumers. */
  ackPendingSum: number;
  deadLetters: number;
  /** The service's bounded caches: live actors (NERVE_MAX_ACTORS) and the gateway's resume buffer (its event budget). */
  actorsLive: number;
  gatewayBuffered: number;
  /** V8's heap as committed (every space): RSS less this is the memory outside V8's heap (native: SQLite, uWS, buffers, code). */
  heapTotalBytes: number;
  /** V8's young generation as committed (semi-spaces, bounded by --max-semi-space-size): RSS that grows and shrinks with the allocation rate. */
  newSpaceBytes: number;
  /** V8's old space: committed, and free inside its committed pages (fragmentation when it grows with the live heap flat). */
  oldSpaceBytes?: number;
  oldSpaceFreeBytes?: number;
  /** Resident memory by kind (the service's /proc status), the SQLite write worker's and the query thread's committed V8 heaps; absent where the service does not report them. */
  rssAnonBytes?: number;
  rssFileBytes?: number;
  rssShmemBytes?: number;
  writerHeapBytes?: number;
  queryHeapBytes?: number;
  /** The query thread's own full collections so far (it runs one once idle after its heap grew 8 MiB); absent where the service does not report them. */
  queryCollections?: number;
  /** Cumulative seconds group commits waited for the relay's backlog (admission). */
  admissionWaitSeconds: number;
  /** Cumulative histogram buckets (upper bound in seconds → count): group-commit transactions, relay publish → ack, command replies (all commands). */
  commitBuckets: Buckets;
  ackBuckets: Buckets;
  replyBuckets: Buckets;
  /** A command's stages (nerve_command_stage_seconds): waiting for its actor, preparing its write, waiting for its commit. */
  stageBuckets: { mailbox: Buckets; prepare: Buckets; commit: Buckets };
}

/** A cumulative Prometheus histogram: [upper bound, count] in ascending order of the bound (+Inf last). */
export type Buckets = Array<[number, number]>;

/** The buckets of histogram `name` summed over all its label sets (those with the label `only`, like `stage="commit"`, when given). */
export function histogramBuckets(text: string, name: string, only?: string): Buckets {
  const byLe = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{([^}]*)\\}\\s+(\\S+)`, "gm");
  for (const m of text.matchAll(re)) {
    if (only && !m[1]!.split(",").includes(only)) continue;
    const le = /(?:^|,)le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le === undefined) continue;
    const bound = le === "+Inf" ? Infinity : Number(le);
    byLe.set(bound, (byLe.get(bound) ?? 0) + Number(m[2]));
  }
  return [...byLe].sort((a, b) => a[0] - b[0]);
}

/**
 * The q-th percentile (0–100) of what a histogram counted between two readings, as the upper bound of
 * the bucket it falls in (ms; Infinity past the last finite bound, 0 when nothing was counted).
 */
export function bucketPercentileMs(before: Buckets | undefined, after: Buckets, q: number): number {
  const prior = new Map(before ?? []);
  const counts = after.map(([le, n]) => [le, n - (prior.get(le) ?? 0)] as const);
  const total = counts.at(-1)?.[1] ?? 0;
  if (total <= 0) return 0;
  const rank = (q / 100) * total;
  for (const [le, n] of counts) if (n >= rank) return le * 1000;
  return Infinity;
}

// The gateway's registry (served at /metrics) prefixes prom-client's default metrics.
const DEFAULTS = "nerve_gateway_";

/** Sample values from the Prometheus text format, by metric name (every labelled series) and by name with its labels as written. */
export function parseMetrics(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const add = (key: string, v: number) => out.set(key, [...(out.get(key) ?? []), v]);
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    add(m[1]!, Number(m[3]));
    if (m[2]) add(m[1]! + m[2], Number(m[3]));
  }
  return out;
}

/** Scrapes the service once; throws when a figure the soak needs is absent. */
export async function sampleService(httpPort: number, dbPath: string, atMs: number): Promise<ServiceSample> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
  const text = await res.text();
  const m = parseMetrics(text);
  const one = (name: string) => {
    const v = m.get(name)?.[0];
    if (v === undefined) throw new Error(`/metrics has no ${name}`);
    return v;
  };
  const all = (name: string) => m.get(name) ?? [];
  const lag = all("nerve_consumer_pending");
  const wal = await stat(`${dbPath}-wal`).then((s) => s.size, () => 0);
  return {
    atMs,
    rssBytes: one(`${DEFAULTS}process_resident_memory_bytes`),
    heapUsedBytes: one(`${DEFAULTS}nodejs_heap_size_used_bytes`),
    heapAfterGcBytes: m.get("nerve_heap_used_after_major_gc_bytes")?.[0] ?? 0,
    loopP99Ms: one(`${DEFAULTS}nodejs_eventloop_lag_p99_seconds`) * 1000,
    openFds: one(`${DEFAULTS}process_open_fds`),
    walBytes: wal,
    walRestarts: m.get('nerve_sqlite_checkpoints_total{mode="restart"}')?.[0] ?? 0,
    walRestartsBlocked: m.get("nerve_sqlite_checkpoint_restarts_blocked_total")?.[0] ?? 0,
    outboxPending: one("nerve_outbox_pending"),
    lagSum: lag.reduce((a, b) => a + b, 0),
    lagMax: Math.max(0, ...lag),
    ackPendingSum: all("nerve_consumer_ack_pending").reduce((a, b) => a + b, 0),
    deadLetters: all("nerve_consumer_dead_letters").reduce((a, b) => a + b, 0),
    actorsLive: one("nerve_actors_live"),
    gatewayBuffered: one("nerve_gateway_buffered_events"),
    heapTotalBytes: one(`${DEFAULTS}nodejs_heap_size_total_bytes`),
    newSpaceBytes: m.get(`${DEFAULTS}nodejs_heap_space_size_total_bytes{space="new"}`)?.[0] ?? 0,
    oldSpaceBytes: m.get(`${DEFAULTS}nodejs_heap_space_size_total_bytes{space="old"}`)?.[0] ?? 0,
    oldSpaceFreeBytes: m.get(`${DEFAULTS}nodejs_heap_space_size_available_bytes{space="old"}`)?.[0] ?? 0,
    rssAnonBytes: m.get('nerve_process_resident_memory_split_bytes{kind="anon"}')?.[0],
    rssFileBytes: m.get('nerve_process_resident_memory_split_bytes{kind="file"}')?.[0],
    rssShmemBytes: m.get('nerve_process_resident_memory_split_bytes{kind="shmem"}')?.[0],
    writerHeapBytes: m.get('nerve_sqlite_writer_heap_bytes{state="total",space="all"}')?.[0] ?? m.get('nerve_sqlite_writer_heap_bytes{state="total"}')?.[0],
    queryHeapBytes: m.get('nerve_sqlite_query_thread_heap_bytes{state="total",space="all"}')?.[0],
    queryCollections: m.get("nerve_sqlite_query_thread_collections_total")?.[0],
    admissionWaitSeconds: m.get("nerve_group_commit_admission_wait_seconds_total")?.[0] ?? 0,
    commitBuckets: histogramBuckets(text, "nerve_group_commit_seconds"),
    ackBuckets: histogramBuckets(text, "nerve_relay_publish_ack_seconds"),
    replyBuckets: histogramBuckets(text, "nerve_command_reply_seconds"),
    stageBuckets: {
      mailbox: histogramBuckets(text, "nerve_command_stage_seconds", 'stage="mailbox"'),
      prepare: histogramBuckets(text, "nerve_command_stage_seconds", 'stage="prepare"'),
      commit: histogramBuckets(text, "nerve_command_stage_seconds", 'stage="commit"'),
    },
  };
}

/** Polls until the outbox is empty and every durable consumer has acknowledged everything; false at the deadline. */
export async function waitDrained(httpPort: number, dbPath: string, deadline: number, onWait: (s: ServiceSample) => void = () => {}): Promise<boolean> {
  for (let polls = 0; ; polls++) {
    const s = await sampleService(httpPort, dbPath, 0);
    if (s.outboxPending === 0 && s.lagSum === 0 && s.ackPendingSum === 0) return true;
    if (Date.now() > deadline) return false;
    if (polls % 10 === 0) onWait(s);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** CPU of the service, nats-server and this process between two readings, as % of one core. */
export function cpuShare(servicePid: number, natsPid: number): () => SoakMinute["cpu"] {
  let last = { at: performance.now(), service: processCpuMs(servicePid) ?? 0, nats: processCpuMs(natsPid) ?? 0, self: process.cpuUsage() };
  return () => {
    const now = { at: performance.now(), service: processCpuMs(servicePid) ?? 0, nats: processCpuMs(natsPid) ?? 0, self: process.cpuUsage() };
    const wall = now.at - last.at;
    const self = process.cpuUsage(last.self);
    const pct = (ms: number) => Math.round((100 * ms) / wall);
    const share = { service: pct(now.service - last.service), nats: pct(now.nats - last.nats), bench: pct((self.user + self.system) / 1000) };
    last = now;
    return share;
  };
}

const MIB = 2 ** 20;

/**
 * A minute's table row from its service samples (at least one), its load and its CPU; `previous` is the
 * last sample of the minute before (the histograms and the admission wait are counted from it).
 */
export function minuteRow(minute: number, samples: ServiceSample[], load: LoadMinute, frames: number, cpu: SoakMinute["cpu"], previous?: ServiceSample): SoakMinute {
  const last = samples.at(-1)!;
  // RSS less the young generation, at the same sample: V8 resizes the semi-spaces with the allocation rate, by tens of MiB at a time.
  const settled = samples.map((s) => s.rssBytes - s.newSpaceBytes);
  return {
    minute,
    rssMb: Math.min(...samples.map((s) => s.rssBytes)) / MIB,
    rssLessYoungMb: Math.min(...settled) / MIB,
    youngMb: last.newSpaceBytes / MIB,
    heapCommittedMb: last.heapTotalBytes / MIB,
    oldSpaceMb: (last.oldSpaceBytes ?? 0) / MIB,
    oldFreeMb: (last.oldSpaceFreeBytes ?? 0) / MIB,
    nativeMb: Math.min(...samples.map((s) => s.rssBytes - s.heapTotalBytes)) / MIB,
    ...(last.rssAnonBytes !== undefined && { rssAnonMb: last.rssAnonBytes / MIB }),
    ...(last.rssFileBytes !== undefined && { rssFileMb: last.rssFileBytes / MIB }),
    ...(last.rssShmemBytes !== undefined && { rssShmemMb: last.rssShmemBytes / MIB }),
    ...(last.writerHeapBytes !== undefined && { writerHeapMb: last.writerHeapBytes / MIB }),
    ...(last.queryHeapBytes !== undefined && { queryHeapMb: last.queryHeapBytes / MIB }),
    ...(last.queryCollections !== undefined && { queryCollections: last.queryCollections - (previous?.queryCollections ?? samples[0]!.queryCollections ?? 0) }),
    stages: {
      admissionWaitS: last.admissionWaitSeconds - (previous?.admissionWaitSeconds ?? samples[0]!.admissionWaitSeconds),
      commitP99Ms: bucketPercentileMs(previous?.commitBuckets, last.commitBuckets, 99),
      ackP99Ms: bucketPercentileMs(previous?.ackBuckets, last.ackBuckets, 99),
      serviceReplyP99Ms: bucketPercentileMs(previous?.replyBuckets, last.replyBuckets, 99),
      mailboxP99Ms: bucketPercentileMs(previous?.stageBuckets.mailbox, last.stageBuckets.mailbox, 99),
      prepareP99Ms: bucketPercentileMs(previous?.stageBuckets.prepare, last.stageBuckets.prepare, 99),
      commitWaitP99Ms: bucketPercentileMs(previous?.stageBuckets.commit, last.stageBuckets.commit, 99),
    },
    // After the latest major collection where the service says; else the minute's floor.
    heapMb: (last.heapAfterGcBytes > 0 ? last.heapAfterGcBytes : Math.min(...samples.map((s) => s.heapUsedBytes))) / MIB,
    loopP99Ms: Math.max(...samples.map((s) => s.loopP99Ms)),
    openFds: Math.max(...samples.map((s) => s.openFds)),
    // The WAL after its checkpoints, as RSS: the minute's lowest. Its size between checkpoints is a sawtooth
    // (16 MiB after each truncation, up to ~60 under a burst); one sample of it is the phase of the saw,
    // and a WAL that grows for good (checkpoints starved) raises the floor.
    walMb: Math.min(...samples.map((s) => s.walBytes)) / MIB,
    walRestarts: { run: last.walRestarts - (previous?.walRestarts ?? samples[0]!.walRestarts), blocked: last.walRestartsBlocked - (previous?.walRestartsBlocked ?? samples[0]!.walRestartsBlocked) },
    outbox: last.outboxPending,
    lagSum: last.lagSum,
    lagMax: last.lagMax,
    replyP99Ms: percentile(Float64Array.from(load.samples).sort(), 99),
    sent: load.sent,
    ok: load.ok,
    failed: load.failed,
    frames,
    cpu,
    actors: last.actorsLive,
    buffered: last.gatewayBuffered,
  };
}

/** Resident memory of one process by mapping, from /proc/<pid>/smaps: kB per mapped file (and [heap], [stack], …), and each anonymous mapping of 512 kB or more resident by its address. */
export interface ResidentMap {
  byName: Array<{ name: string; mappings: number; rssKb: number }>;
  anonymous: Array<{ start: string; sizeKb: number; rssKb: number }>;
}

/** Reads /proc/<pid>/smaps (Linux); undefined where it cannot. */
export async function residentMap(pid: number): Promise<ResidentMap | undefined> {
  const text = await readFile(`/proc/${pid}/smaps`, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const byName = new Map<string, { mappings: number; rssKb: number }>();
  const anonymous: ResidentMap["anonymous"] = [];
  let current: { name: string; start: string; sizeKb: number; rssKb: number } | undefined;
  const flush = () => {
    if (!current) return;
    const n = byName.get(current.name) ?? { mappings: 0, rssKb: 0 };
    n.mappings++;
    n.rssKb += current.rssKb;
    byName.set(current.name, n);
    if (current.name === "[anon]" && current.rssKb >= 512) anonymous.push({ start: current.start, sizeKb: current.sizeKb, rssKb: current.rssKb });
  };
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      flush();
      current = { name: head[3] || "[anon]", start: head[1]!, sizeKb: 0, rssKb: 0 };
      continue;
    }
    const field = /^(Size|Rss):\s+(\d+) kB$/.exec(line);
    if (field && current) current[field[1] === "Size" ? "sizeKb" : "rssKb"] = Number(field[2]);
  }
  flush();
  return {
    byName: [...byName].map(([name, v]) => ({ name, ...v })).sort((a, b) => b.rssKb - a.rssKb).slice(0, 30),
    anonymous: anonymous.sort((a, b) => b.rssKb - a.rssKb),
  };
}
