/** Latency summaries from raw samples: a sorted array and nearest-rank percentiles (no histogram library). */

/** A latency distribution in milliseconds. */
export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** The nearest-rank percentile `p` (0–100) of ascending `sorted`; 0 for no samples. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/**
 * The median of `xs` (any order): the middle value, or the mean of the two middle ones for an even count;
 * NaN for none. (A summary's `p50` is the nearest rank instead: the lower of the two.)
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The latency bounds (ms) tail shares are read at: 5 (the one-at-a-time target's p99), 20 (the open
 * loop's), 50. Bounds of the service's histograms' buckets (LATENCY_BUCKETS), so the client's shares and
 * the service's stages' compare (stage-breakdown.ts).
 */
export const TAIL_MS = [5, 20, 50] as const;

/** The share (0–1) of `samples` above each bound (same unit), by bound. */
export function shareOver(samples: ArrayLike<number>, bounds: readonly number[]): Record<number, number> {
  const over = bounds.map(() => 0);
  for (let i = 0; i < samples.length; i++) for (let b = 0; b < bounds.length; b++) if (samples[i]! > bounds[b]!) over[b]!++;
  return Object.fromEntries(bounds.map((b, k) => [b, samples.length ? over[k]! / samples.length : 0]));
}

/** Summarises samples (milliseconds); sorts a copy, so the caller's order is kept. */
export function summarize(samples: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    mean: sorted.length ? sum / sorted.length : 0,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length ? sorted[sorted.length - 1]! : 0,
  };
}
