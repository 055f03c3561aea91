import { describe, expect, it } from "vitest";
import { EventIdTally } from "../../bench/event-id-tally.js";
import { niceMax, soakSvg } from "../../bench/soak-plot.js";
import { bucketPercentileMs, histogramBuckets, minuteRow, parseMetrics, type Buckets, type ServiceSample } from "../../bench/soak-sampler.js";
import { leastSquares, memoryWarmup, soakVerdict, soakWindows, windowP99, type SoakMinute } from "../../bench/soak-verdict.js";

/** A minute whose memory follows `mb(minute)` and whose reply p99 is `p99`. */
const minute = (m: number, mb: (m: number) => number, p99 = 20): SoakMinute => ({
  minute: m, rssMb: 300 + mb(m), heapMb: 120 + mb(m), walMb: 4, loopP99Ms: 12, openFds: 1100, outbox: 0, lagSum: 0, lagMax: 0,
  replyP99Ms: p99, sent: 60_000, ok: 60_000, failed: 0, frames: 1200, cpu: { service: 80, nats: 15, bench: 20 },
});
const run = (minutes: number, mb: (m: number) => number) => Array.from({ length: minutes }, (_, i) => minute(i + 1, mb));
const clean = { drained: true, missing: 0, duplicated: 0 };

describe("soak verdict", () => {
  it("fits the least-squares slope and its standard error, and ignores a lone point", () => {
    expect(leastSquares([[1, 3], [2, 5], [3, 7], [4, 9]])).toEqual({ slope: 2, stdError: 0 });
    // Residuals +1, -1, -1, +1 around slope 0: s² = 4/2, Sxx = 5, so the error is √(2/5).
    const noisy = leastSquares([[1, 1], [2, -1], [3, -1], [4, 1]]);
    expect(noisy.slope).toBeCloseTo(0, 12);
    expect(noisy.stdError).toBeCloseTo(Math.sqrt(2 / 5), 12);
    expect(leastSquares([[5, 1]]).slope).toBe(0);
    expect(leastSquares([[2, 1], [2, 9]]).slope).toBe(0);
  });

  it("excludes 5 minutes of warm-up from a 30-minute run and a fifth of a short one", () => {
    expect(soakWindows(30)).toEqual({ warmup: 5, window: 5 });
    expect(soakWindows(10)).toEqual({ warmup: 2, window: 2 });
    expect(soakWindows(3)).toEqual({ warmup: 1, window: 1 });
  });

  it("passes flat memory after a steep warm-up, and fails a leak of 2 MiB per 10 minutes", () => {
    // Warm-up: +50 MiB a minute for 5 minutes, then flat with ±0.2 MiB of noise.
    const flat = run(30, (m) => (m <= 5 ? 50 * m : 250 + (m % 2 ? 0.2 : -0.2)));
    const ok = soakVerdict(flat, { first: 30, last: 40 }, clean);
    expect(ok.pass).toBe(true);
    expect(Math.abs(ok.checks[0]!.value)).toBeLessThan(0.2);
    const leaking = run(30, (m) => 250 + 0.2 * m);
    const bad = soakVerdict(leaking, { first: 30, last: 40 }, clean);
    expect(bad.pass).toBe(false);
    expect(bad.checks.find((c) => c.name.startsWith("RSS"))!.value).toBeCloseTo(2, 9);
  });

  it("judges memory only once the bounded caches stopped filling: growth towards a cache's bound is not a leak", () => {
    // The gateway's buffer fills until minute 15 (memory with it), then both stay flat.
    const rows = run(30, (m) => 200 + 10 * Math.min(m, 15)).map((r) => ({ ...r, actors: 100_000, buffered: 16_000 * Math.min(r.minute, 15) }));
    expect(memoryWarmup(rows)).toBe(15);
    expect(soakVerdict(rows, { first: 20, last: 20 }, clean).pass).toBe(true);
    // Without the caches' figures, the fixed warm-up: the same memory is a leak.
    expect(memoryWarmup(rows.map(({ actors: _a, buffered: _b, ...r }) => r))).toBe(5);
    // Caches that never stop filling leave memory unjudged.
    const filling = rows.map((r) => ({ ...r, buffered: 1000 * r.minute }));
    expect(memoryWarmup(filling)).toBe(30);
    expect(soakVerdict(filling, { first: 20, last: 20 }, clean).judgedAll).toBe(false);
  });

  it("with RSS split into V8's committed heap and native memory, judges RSS, native memory and the live heap, and reports RSS's second half", () => {
    const rows = run(30, () => 200).map((r) => ({ ...r, nativeMb: 150 + (r.minute % 2 ? 0.3 : -0.3), rssMb: 700 + (r.minute % 2 ? 0.5 : -0.5) }));
    const v = soakVerdict(rows, { first: 20, last: 20 }, clean);
    expect(v).toMatchObject({ pass: true, judgedAll: true });
    expect(v.checks.find((c) => c.name === "RSS slope after warm-up")).toMatchObject({ pass: true });
    expect(v.checks.find((c) => c.name.startsWith("RSS slope over the second half"))).toMatchObject({ pass: null, reportedOnly: true });
    // V8 grows its committed old space by 90 MiB at minute 20 with nothing more live: RSS fails, the rest is flat.
    const stepped = soakVerdict(rows.map((r) => ({ ...r, rssMb: 700 + (r.minute >= 20 ? 90 : 0) })), { first: 20, last: 20 }, clean);
    expect(stepped.pass).toBe(false);
    expect(stepped.checks.filter((c) => c.pass === false).map((c) => c.name)).toEqual(["RSS slope after warm-up"]);
    // The second half is reported beside it: RSS that levelled off (a step at minute 10, flat after) shows 0 there.
    const levelled = soakVerdict(rows.map((r) => ({ ...r, rssMb: 700 + (r.minute >= 10 ? 90 : 0) })), { first: 20, last: 20 }, clean);
    expect(levelled.checks.find((c) => c.name.startsWith("RSS slope over the second half"))).toMatchObject({ name: "RSS slope over the second half (minutes 16–30)", value: 0, pass: null, reportedOnly: true });
    // A native leak of 2 MiB per 10 minutes fails, also where RSS hides it.
    const leaking = soakVerdict(rows.map((r) => ({ ...r, nativeMb: 150 + 0.2 * r.minute })), { first: 20, last: 20 }, clean);
    expect(leaking.pass).toBe(false);
    expect(leaking.checks.filter((c) => c.pass === false).map((c) => c.name)).toEqual(["native memory (RSS − V8's committed heap) slope after warm-up"]);
  });

  it("reports where native memory went (anonymous, file-backed, shared, the write worker's and query thread's heaps, native's second half) without judging it", () => {
    const rows = run(30, () => 200).map((r) => ({ ...r, nativeMb: 150 + 0.2 * r.minute, rssMb: 700, rssAnonMb: 500 + 0.2 * r.minute, rssFileMb: 90, rssShmemMb: 16, writerHeapMb: 12, queryHeapMb: 6 + 0.1 * r.minute }));
    const v = soakVerdict(rows, { first: 20, last: 20 }, clean);
    const reported = v.checks.filter((c) => c.reportedOnly).map((c) => [c.name, Math.round(c.value * 100) / 100 + 0, c.pass]);
    expect(reported).toEqual([
      ["RSS slope over the second half (minutes 16–30)", 0, null],
      ["native memory slope over the second half (minutes 16–30)", 2, null],
      ["anonymous resident memory slope after warm-up", 2, null],
      ["file-backed resident memory slope after warm-up", 0, null],
      ["shared resident memory (SQLite WAL index) slope after warm-up", 0, null],
      ["SQLite write worker's V8 heap (committed) slope after warm-up", 0, null],
      ["query thread's V8 heap (committed) slope after warm-up", 1, null],
    ]);
    // Only the judged native slope fails the run; the parts explain it.
    expect(v.checks.filter((c) => c.pass === false).map((c) => c.name)).toEqual(["native memory (RSS − V8's committed heap) slope after warm-up"]);
    // A run from before the parts were sampled reports none of them.
    expect(soakVerdict(run(30, () => 200), { first: 20, last: 20 }, clean).checks.filter((c) => c.reportedOnly)).toEqual([]);
  });

  it("does not judge memory on a run too short to fit a slope after its warm-up", () => {
    const v = soakVerdict(run(1, (m) => 10 * m), { first: 20, last: 20 }, clean);
    expect(v.checks.filter((c) => c.pass === null).map((c) => c.name)).toEqual(["RSS slope after warm-up", "heap slope after warm-up", "WAL slope after warm-up"]);
    expect(v).toMatchObject({ pass: true, judgedAll: false });
  });

  it("fails a p99 that grows past 1.5 × and any lost or duplicated event", () => {
    const rows = run(30, () => 0);
    expect(soakVerdict(rows, { first: 20, last: 30 }, clean).pass).toBe(true);
    const slow = soakVerdict(rows, { first: 20, last: 31 }, clean);
    expect(slow.checks.filter((c) => !c.pass).map((c) => c.name)).toEqual(["reply p99, last window ÷ first"]);
    expect(soakVerdict(rows, { first: 20, last: 20 }, { ...clean, missing: 1 }).pass).toBe(false);
    expect(soakVerdict(rows, { first: 20, last: 20 }, { ...clean, duplicated: 1 }).pass).toBe(false);
    expect(soakVerdict(rows, { first: 20, last: 20 }, { ...clean, drained: false }).pass).toBe(false);
  });

  it("takes the p99 of a window over all its minutes' samples", () => {
    const minutes = [Float64Array.from({ length: 100 }, (_, i) => i + 1), Float64Array.from({ length: 100 }, () => 1000)];
    expect(windowP99(minutes, 1, 1)).toBe(99);
    expect(windowP99(minutes, 1, 2)).toBe(1000);
  });
});

describe("event id tally", () => {
  const id = (n: number) => `0190a1b2-c3d4-7${(n >>> 16).toString(16).padStart(3, "0")}-8${(n & 0xfff).toString(16).padStart(3, "0")}-${n.toString(16).padStart(12, "0")}`;

  it("counts missing and duplicated ids across growth of the table", () => {
    const t = new EventIdTally(16);
    for (let n = 0; n < 50_000; n++) t.ack(id(n));
    for (let n = 1; n < 50_000; n++) t.see(id(n)); // id(0) never stored
    t.see(id(7)); // stored twice
    t.see(id(60_000)); // stored, never acknowledged (a consumer's own command)
    expect(t.summary()).toEqual({ acknowledged: 50_000, seen: 50_000, missing: 1, duplicated: 1 });
  });

  it("refuses what is not a UUID", () => {
    expect(() => new EventIdTally().ack("not-a-uuid")).toThrow(/not a UUID/);
  });
});

describe("soak plot and metrics", () => {
  it("draws both panels with one point per minute and round axis maxima", () => {
    const svg = soakSvg([{ minute: 1, rssMb: 310, heapMb: 120, replyP99Ms: 18 }, { minute: 2, rssMb: 312, heapMb: 121, replyP99Ms: 23 }], "soak <test>", 1);
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("soak &lt;test>");
    expect(svg.match(/<polyline/g)).toHaveLength(3);
    expect(svg.match(/<circle/g)).toHaveLength(6);
    expect(svg.match(/>warm-up</g)).toHaveLength(2);
    expect([niceMax(312), niceMax(23), niceMax(0), niceMax(1000)]).toEqual([500, 50, 1, 1000]);
  });

  it("takes the minute's lowest RSS and WAL, and heap after the latest major GC where the service reports it, else the minute's floor", () => {
    const MiB = 2 ** 20;
    const sample = (rss: number, heap: number, afterGc: number, wal = 4, restarts = 0, blocked = 0): ServiceSample => ({
      atMs: 0, rssBytes: rss * MiB, heapUsedBytes: heap * MiB, heapAfterGcBytes: afterGc * MiB,
      loopP99Ms: heap / 10, openFds: 1000, walBytes: wal * MiB, walRestarts: restarts, walRestartsBlocked: blocked, outboxPending: 3, lagSum: 5, lagMax: 4, ackPendingSum: 0, deadLetters: 0, actorsLive: 10, gatewayBuffered: 20,
      heapTotalBytes: (heap + 100) * MiB, newSpaceBytes: 40 * MiB, admissionWaitSeconds: rss / 100, commitBuckets: [], ackBuckets: [], replyBuckets: [], stageBuckets: { mailbox: [], prepare: [], commit: [] },
    });
    const load = { sent: 4, ok: 3, failed: 1, failedByCode: { transport: 1 }, samples: Float64Array.of(5, 1, 9, 3) };
    const cpu = { service: 50, nats: 10, bench: 5 };
    const floor = minuteRow(2, [sample(500, 300, 0, 16), sample(450, 200, 0, 4), sample(520, 350, 0, 40)], load, 7, cpu);
    expect(floor).toMatchObject({ minute: 2, rssMb: 450, heapMb: 200, loopP99Ms: 35, walMb: 4, outbox: 3, lagSum: 5, replyP99Ms: 9, sent: 4, ok: 3, failed: 1, frames: 7 });
    const afterGc = minuteRow(3, [sample(500, 300, 150), sample(450, 200, 140)], load, 0, cpu);
    expect(afterGc).toMatchObject({ rssMb: 450, heapMb: 140, rssLessYoungMb: 410, youngMb: 40, heapCommittedMb: 300, nativeMb: 100 });
    // The admission wait is counted from the previous minute's last sample.
    expect(minuteRow(4, [sample(600, 1, 0)], load, 0, cpu, sample(500, 1, 0)).stages?.admissionWaitS).toBeCloseTo(1);
    // So are the WAL's RESTARTs and the blocked ones among them (cumulative counters); the first minute counts from its first sample.
    expect(minuteRow(5, [sample(600, 1, 0, 4, 30, 7)], load, 0, cpu, sample(600, 1, 0, 4, 21, 2)).walRestarts).toEqual({ run: 9, blocked: 5 });
    expect(minuteRow(1, [sample(600, 1, 0, 4, 3, 1), sample(600, 1, 0, 4, 8, 1)], load, 0, cpu).walRestarts).toEqual({ run: 5, blocked: 0 });
    // The query thread's own collections, likewise; absent where the service does not report them.
    const collected = (n: number): ServiceSample => ({ ...sample(600, 1, 0), queryCollections: n });
    expect(minuteRow(6, [collected(3)], load, 0, cpu, collected(1)).queryCollections).toBe(2);
    expect(minuteRow(1, [collected(0), collected(1)], load, 0, cpu).queryCollections).toBe(1);
    expect(minuteRow(1, [sample(600, 1, 0)], load, 0, cpu)).not.toHaveProperty("queryCollections");
  });

  it("sums a histogram's buckets over its label sets and reads a percentile of what it counted between two readings", () => {
    const text = [`h_bucket{context="x",le="0.001"} 10`, `h_bucket{context="y",le="0.001"} 10`, `h_bucket{context="x",le="0.1"} 10`, `h_bucket{context="y",le="0.1"} 10`, `h_bucket{le="+Inf",context="x"} 10`, `h_bucket{context="y",le="+Inf"} 10`, `h_count 20`, `hh_bucket{le="0.001"} 99`].join("\n");
    const before = histogramBuckets(text, "h");
    expect(before).toEqual([[0.001, 20], [0.1, 20], [Infinity, 20]]);
    expect(histogramBuckets(text, "h", 'context="y"')).toEqual([[0.001, 10], [0.1, 10], [Infinity, 10]]);
    // Between the readings: 100 in ≤ 1 ms and 3 in (1 ms, 100 ms].
    const after: Buckets = [[0.001, 120], [0.1, 123], [Infinity, 123]];
    expect(bucketPercentileMs(before, after, 50)).toBe(1);
    expect(bucketPercentileMs(before, after, 99)).toBe(100);
    expect(bucketPercentileMs(undefined, [[0.001, 1], [0.1, 2], [Infinity, 3]], 99)).toBe(Infinity);
    expect(bucketPercentileMs(before, before, 99)).toBe(0);
  });

  it("reads labelled and plain samples from the Prometheus text format", () => {
    const m = parseMetrics('# HELP x\nnerve_consumer_pending{consumer="a",stream="S"} 3\nnerve_consumer_pending{consumer="b",stream="S"} 4\nnerve_outbox_pending 0\n');
    expect(m.get("nerve_consumer_pending")).toEqual([3, 4]);
    expect(m.get('nerve_consumer_pending{consumer="b",stream="S"}')).toEqual([4]);
    expect(m.get("nerve_outbox_pending")).toEqual([0]);
  });
});
