/** The benches' latency summaries: nearest-rank percentiles, the median, and the tails' shares. */
import { describe, expect, it } from "vitest";
import { median, percentile, shareOver, summarize } from "../../bench/percentiles.js";

describe("bench percentiles", () => {
  it("takes the median as the middle value, or the mean of the two middle ones, whatever the order; NaN for none", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeNaN();
    // The caller's array is left in its order.
    const xs = [5, 1, 4];
    median(xs);
    expect(xs).toEqual([5, 1, 4]);
  });

  it("reads a percentile at its nearest rank (so p50 of an even count is the lower middle), 0 for no samples", () => {
    const sorted = [1, 2, 3, 4];
    expect(percentile(sorted, 50)).toBe(2);
    expect(percentile(sorted, 99)).toBe(4);
    expect(percentile(sorted, 0)).toBe(1);
    expect(percentile([], 50)).toBe(0);
    expect(summarize([4, 3, 2, 1])).toMatchObject({ count: 4, mean: 2.5, p50: 2, max: 4 });
  });

  it("tells the share of samples above each bound", () => {
    expect(shareOver([1, 6, 25, 60], [5, 20, 50])).toEqual({ 5: 0.75, 20: 0.5, 50: 0.25 });
    expect(shareOver([], [5])).toEqual({ 5: 0 });
  });
});
