/** The soak's pass/fail rules, as pure functions of its per-minute figures (unit-tested apart from the run). */
import { percentile } from "./percentiles.js";

/** One minute of the soak, as the table prints it. */
export interface SoakMinute {
  minute: number;
  /** Service RSS, MiB: the lowest of the minute's 5-second samples. */
  rssMb: number;
  /** RSS less V8's young generation (committed), MiB, the minute's lowest: what the verdict's memory check judges beside the heap; absent in runs before it was sampled. */
  rssLessYoungMb?: number;
  /** V8's heap as committed (all spaces) at the end of the minute, MiB: it grows and shrinks with V8's own sizing, well above what is live. */
  heapCommittedMb?: number;
  /** RSS less V8's committed heap, MiB, the minute's lowest: memory outside V8 (SQLite, uWS, buffers, code). */
  nativeMb?: number;
  /** Resident memory by kind at the end of the minute, MiB (Linux /proc status: anonymous, file-backed, shared — the WAL index), and the SQLite write worker's own V8 heap (committed), part of native; absent in runs before they were sampled. */
  rssAnonMb?: number;
  rssFileMb?: number;
  rssShmemMb?: number;
  writerHeapMb?: number;
  /** The query thread's own V8 heap (committed), part of native; absent in runs before stop 40. */
  queryHeapMb?: number;
  /** The query thread's own full collections this minute (src/persistence/query-thread.ts); absent in runs before stop 55. */
  queryCollections?: number;
  /** V8's young generation as committed at the end of the minute, MiB. */
  youngMb?: number;
  /** V8's old space as committed at the end of the minute, and the free space inside it, MiB; absent in runs before they were sampled. */
  oldSpaceMb?: number;
  oldFreeMb?: number;
  /**
   * Where a command's time went this minute, from the service's own histograms: seconds group commits
   * waited for the relay's backlog (admission), and p99 (bucket upper bounds, ms) of a group-commit
   * transaction, of a relay publish → JetStream ack, of a command from receipt to reply, and of a
   * command's stages: waiting for its actor (mailbox), preparing its write, waiting for its commit.
   */
  stages?: { admissionWaitS: number; commitP99Ms: number; ackP99Ms: number; serviceReplyP99Ms: number; mailboxP99Ms?: number; prepareP99Ms?: number; commitWaitP99Ms?: number };
  /** Service V8 heap used, MiB, right after its latest major collection (where the service reports it; else the lowest of the minute's samples). */
  heapMb: number;
  /** Event-loop delay p99 of the service, ms: the worst of the minute's 5-second windows. */
  loopP99Ms: number;
  openFds: number;
  /** SQLite WAL file size at the end of the minute, MiB. */
  walMb: number;
  /** WAL RESTART checkpoints this minute, and of them those SQLite reported blocked (the WAL did not start over). */
  walRestarts?: { run: number; blocked: number };
  /** Committed events not yet in JetStream, at the end of the minute. */
  outbox: number;
  /** Events the durable consumers have not yet been delivered, summed and worst single consumer. */
  lagSum: number;
  lagMax: number;
  /** Reply p99 of commands and queries answered this minute, from their intended send time, ms. */
  replyP99Ms: number;
  sent: number;
  ok: number;
  failed: number;
  /** WebSocket frames the learners received. */
  frames: number;
  /** CPU used this minute, % of one core. */
  cpu: { service: number; nats: number; bench: number };
  /** Live actors and events in the gateway's resume buffer at the end of the minute: caches that fill up to a bound. */
  actors?: number;
  buffered?: number;
}

/** The thresholds of the issue. */
export const SOAK_LIMITS = { mbPer10Min: 1, p99Ratio: 1.5 } as const;

/** The warm-up excluded from the slopes, and the length of the first/last p99 windows, in minutes: 5 each for a 25-minute run or longer, else a fifth of the run (at least one minute). */
export function soakWindows(minutes: number): { warmup: number; window: number } {
  if (minutes >= 25) return { warmup: 5, window: 5 };
  const fifth = Math.max(1, Math.round(minutes / 5));
  return { warmup: fifth, window: fifth };
}

/** Growth of a bounded cache per minute, below which it counts as full. */
export const CACHE_FULL_GROWTH = 0.01;

/**
 * Minutes to leave out of the memory slopes: the fixed warm-up, and longer while a bounded cache (live
 * actors up to NERVE_MAX_ACTORS, the gateway's resume buffer up to its event budget) still fills. Memory
 * that grows with a cache filling towards its bound is not a leak; what grows once the caches are full
 * is. Ends after the last minute in which either grew by {@link CACHE_FULL_GROWTH} or more.
 */
export function memoryWarmup(rows: ReadonlyArray<SoakMinute>): number {
  let warmup = soakWindows(rows.length).warmup;
  for (let i = 1; i < rows.length; i++) {
    const grew = (pick: (r: SoakMinute) => number | undefined) => {
      const a = pick(rows[i - 1]!) ?? 0;
      const b = pick(rows[i]!) ?? 0;
      return b - a >= CACHE_FULL_GROWTH * Math.max(a, 1);
    };
    if (grew((r) => r.actors) || grew((r) => r.buffered)) warmup = Math.max(warmup, rows[i]!.minute);
  }
  return warmup;
}

/** Least-squares slope of y over x, with its standard error (0 when fewer than three points leave no residual to judge by); slope 0 for fewer than two distinct x. */
export function leastSquares(points: ReadonlyArray<readonly [number, number]>): { slope: number; stdError: number } {
  const n = points.length;
  if (n < 2) return { slope: 0, stdError: 0 };
  let mx = 0;
  let my = 0;
  for (const [x, y] of points) {
    mx += x / n;
    my += y / n;
  }
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  if (sxx === 0) return { slope: 0, stdError: 0 };
  const slope = sxy / sxx;
  let residuals = 0;
  for (const [x, y] of points) residuals += (y - my - slope * (x - mx)) ** 2;
  return { slope, stdError: n > 2 ? Math.sqrt(residuals / (n - 2) / sxx) : 0 };
}

/** p99 of the latency samples of minutes `from`..`to` (1-based, inclusive). */
export function windowP99(samplesByMinute: ReadonlyArray<Float64Array>, from: number, to: number): number {
  const parts = samplesByMinute.slice(from - 1, to);
  const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return percentile(all.sort(), 99);
}

/** What the end-of-run audit found. */
export interface SoakAudit {
  /** Outbox empty and every durable consumer caught up before the deadline. */
  drained: boolean;
  missing: number;
  duplicated: number;
}

/** One check of the verdict; `pass` is null when the run is too short to judge it (a slope needs two minutes after the warm-up). */
export interface SoakCheck {
  name: string;
  value: number;
  /** The standard error of a fitted slope, in the same unit: a slope within about two of them of the limit is noise, not a verdict. */
  stdError?: number;
  limit: number;
  unit: string;
  pass: boolean | null;
  /** Printed and kept, never judged: a figure the judged checks explain. */
  reportedOnly?: true;
}

/** A memory slope over `rows` (MiB per 10 minutes) against the limit; not judged (null) with fewer than two rows. */
function slopeCheck(rows: ReadonlyArray<SoakMinute>, name: string, pick: (r: SoakMinute) => number, limit: number): SoakCheck {
  const fit = leastSquares(rows.map((r) => [r.minute, pick(r)] as const));
  const value = fit.slope * 10;
  return { name, value, stdError: fit.stdError * 10, limit, unit: "MiB/10 min", pass: rows.length >= 2 ? value <= limit : null };
}

/** The verdict over a run's minutes, its first and last window p99s and its audit: a pass when no check failed. */
export function soakVerdict(rows: ReadonlyArray<SoakMinute>, p99: { first: number; last: number }, audit: SoakAudit, limits = SOAK_LIMITS): { pass: boolean; judgedAll: boolean; checks: SoakCheck[] } {
  const warmup = memoryWarmup(rows);
  const steady = rows.filter((r) => r.minute > warmup);
  const steadySlope = (name: string, pick: (r: SoakMinute) => number) => slopeCheck(steady, name, pick, limits.mbPer10Min);
  // RSS over the run's second half, reported beside the judged slope: growth that levels off shows near
  // zero there, while a leak grows in every half of the run.
  const half = rows.filter((r) => r.minute > rows.length / 2);
  const secondHalfRss: SoakCheck = { ...slopeCheck(half, `RSS slope over the second half (minutes ${half[0]?.minute ?? "–"}–${rows.length})`, (r) => r.rssMb, limits.mbPer10Min), pass: null, reportedOnly: true };
  const ratio = p99.first > 0 ? p99.last / p99.first : Number.POSITIVE_INFINITY;
  // RSS is judged, and so are its parts where a leak would show: the live heap after a major collection
  // (JavaScript) and RSS less V8's committed heap (native: SQLite, uWS, buffers). RSS was only reported
  // while V8 promoted whole young pages into the old space and fragmented it (+9 MiB/10 min with the
  // live heap flat); the service now runs with --no-page-promotion and --no-allocation-site-pretenuring.
  const split = steady.length > 0 && steady.every((r) => r.nativeMb !== undefined);
  const rss = steadySlope("RSS slope after warm-up", (r) => r.rssMb);
  // Where native memory goes, reported beside the judged slopes (not judged: parts of RSS already judged).
  const parts: SoakCheck[] = [];
  const part = (name: string, pick: (r: SoakMinute) => number | undefined, over = steady) => {
    if (over.length > 0 && over.every((r) => pick(r) !== undefined)) parts.push({ ...slopeCheck(over, name, (r) => pick(r)!, limits.mbPer10Min), pass: null, reportedOnly: true });
  };
  part(`native memory slope over the second half (minutes ${half[0]?.minute ?? "–"}–${rows.length})`, (r) => r.nativeMb, half);
  part("anonymous resident memory slope after warm-up", (r) => r.rssAnonMb);
  part("file-backed resident memory slope after warm-up", (r) => r.rssFileMb);
  part("shared resident memory (SQLite WAL index) slope after warm-up", (r) => r.rssShmemMb);
  part("SQLite write worker's V8 heap (committed) slope after warm-up", (r) => r.writerHeapMb);
  part("query thread's V8 heap (committed) slope after warm-up", (r) => r.queryHeapMb);
  const checks: SoakCheck[] = [
    ...(split ? [rss, secondHalfRss, steadySlope("native memory (RSS − V8's committed heap) slope after warm-up", (r) => r.nativeMb!)] : [rss]),
    ...parts,
    steadySlope("heap slope after warm-up", (r) => r.heapMb),
    steadySlope("WAL slope after warm-up", (r) => r.walMb),
    { name: "reply p99, last window ÷ first", value: ratio, limit: limits.p99Ratio, unit: "×", pass: ratio <= limits.p99Ratio },
    { name: "outbox and consumers drained", value: audit.drained ? 1 : 0, limit: 1, unit: "", pass: audit.drained },
    { name: "acknowledged events missing from the streams", value: audit.missing, limit: 0, unit: "", pass: audit.missing === 0 },
    { name: "events in the streams more than once", value: audit.duplicated, limit: 0, unit: "", pass: audit.duplicated === 0 },
  ];
  return { pass: checks.every((c) => c.pass !== false), judgedAll: checks.every((c) => c.reportedOnly || c.pass !== null), checks };
}
