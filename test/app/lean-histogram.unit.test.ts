/** LeanHistogram exposes exactly what prom-client's Histogram exposes for the same observations. */
import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { LeanHistogram } from "../../src/app/lean-histogram.js";
import { LATENCY_BUCKETS } from "../../src/app/latency-metrics.js";

// A fixed pseudo-random sequence, with values on the bounds, below the first and past the last.
function values(n: number): number[] {
  let x = 7;
  const out = [0, 0.0005, 0.001, 5, 5.0001, 42, 1e-9];
  for (let i = 0; i < n; i++) {
    x = (x * 48271) % 2147483647;
    out.push((x / 2147483647) ** 3 * 6);
  }
  return out;
}

function pair(labelNames: string[]) {
  const prom = new Histogram({ name: "nerve_t_seconds", help: "A test histogram", labelNames, buckets: LATENCY_BUCKETS, registers: [] });
  const lean = new LeanHistogram({ name: "nerve_t_seconds", help: "A test histogram", labelNames, buckets: LATENCY_BUCKETS });
  const [a, b] = [new Registry(), new Registry()];
  a.registerMetric(prom);
  lean.register(b);
  return { prom, lean, a, b };
}

describe("LeanHistogram", () => {
  it("gives /metrics the same text as prom-client's Histogram, series in order of first use", async () => {
    const { prom, lean, a, b } = pair(["context", "command", "result"]);
    const series = [
      ["users", "UpdateUserProfile", "ok"],
      ["orders", "PlaceOrder", "conflict"],
      ["users", "RegisterUser", "ok"],
    ] as const;
    const leanSeries = series.map((s) => lean.labels(...s));
    values(3000).forEach((v, i) => {
      prom.labels(...series[i % 3]!).observe(v);
      leanSeries[i % 3]!.observe(v);
    });
    const text = await b.metrics();
    expect(text).toBe(await a.metrics());
    expect(text).toContain('nerve_t_seconds_bucket{le="0.0005",context="users",command="UpdateUserProfile",result="ok"}');
    expect(text).toContain('nerve_t_seconds_count{context="orders",command="PlaceOrder",result="conflict"} 1002');
    expect(await b.getMetricsAsJSON()).toEqual(await a.getMetricsAsJSON());
  });

  it("exports a histogram without labels before any observation, as prom-client does, and after", async () => {
    const { prom, lean, a, b } = pair([]);
    expect(await b.metrics()).toBe(await a.metrics());
    for (const v of values(500)) {
      prom.observe(v);
      lean.observe(v);
    }
    expect(await b.metrics()).toBe(await a.metrics());
    prom.reset();
    lean.reset();
    expect(await b.metrics()).toBe(await a.metrics());
  });

  it("refuses what prom-client refuses: a value that is not a finite number, a wrong number of label values", () => {
    const { prom, lean } = pair(["stage"]);
    expect(() => prom.labels("commit").observe(Number.NaN)).toThrow(TypeError);
    expect(() => lean.labels("commit").observe(Number.NaN)).toThrow(TypeError);
    expect(() => lean.labels("commit").observe(Number.POSITIVE_INFINITY)).toThrow(TypeError);
    expect(() => lean.labels()).toThrow(/label/);
    expect(() => lean.labels("a", "b")).toThrow(/label/);
  });
});
