import { describe, expect, it } from "vitest";
import { Gauge } from "prom-client";
import { GatewayMetrics, METRICS_REUSE_MS } from "../../src/gateway/metrics.js";

/** A gauge whose every render waits until the test lets it end; counts renders and how many ran at once. */
function slowGauge(metrics: GatewayMetrics) {
  const state = { renders: 0, running: 0, mostRunning: 0, release: [] as (() => void)[] };
  new Gauge({
    name: "test_renders",
    help: "renders of the registry",
    registers: [metrics.registry],
    async collect() {
      this.set(++state.renders);
      state.mostRunning = Math.max(state.mostRunning, ++state.running);
      await new Promise<void>((ok) => state.release.push(ok));
      state.running--;
    },
  });
  return state;
}

const rendered = async (text: Promise<string>) => Number(/^test_renders (\d+)$/m.exec(await text)?.[1]);
const turn = () => new Promise((r) => setImmediate(r));

describe("GatewayMetrics.render on a clock of the test's", () => {
  it("renders once for requests that come together, serves the text again within the reuse time, afresh after it", async () => {
    let now = 1_000_000;
    const metrics = new GatewayMetrics(() => now);
    const g = slowGauge(metrics);
    const together = Array.from({ length: 100 }, () => rendered(metrics.render()));
    await turn();
    expect(g.renders).toBe(1);
    g.release.splice(0).forEach((ok) => ok());
    expect(new Set(await Promise.all(together))).toEqual(new Set([1]));
    now += METRICS_REUSE_MS; // the last moment the text is served again
    expect(await rendered(metrics.render())).toBe(1);
    expect(g.renders).toBe(1);
    now += 1;
    const fresh = Array.from({ length: 20 }, () => rendered(metrics.render()));
    await turn();
    g.release.splice(0).forEach((ok) => ok());
    expect(new Set(await Promise.all(fresh))).toEqual(new Set([2]));
    expect(g.renders).toBe(2);
  });

  it("a request that comes while a render too old to serve still runs waits for it, then for one render of its own; one runs at a time", async () => {
    let now = 1_000_000;
    const metrics = new GatewayMetrics(() => now);
    const g = slowGauge(metrics);
    const first = rendered(metrics.render());
    await turn();
    now += METRICS_REUSE_MS + 1; // the first render began too long ago and still runs
    const second = rendered(metrics.render());
    const third = rendered(metrics.render());
    await turn();
    expect(g.renders).toBe(1); // the second render waits for the first to end
    g.release.splice(0).forEach((ok) => ok());
    expect(await first).toBe(1);
    while (g.release.length === 0) await turn();
    g.release.splice(0).forEach((ok) => ok());
    expect([await second, await third]).toEqual([2, 2]);
    expect(g.renders).toBe(2);
    expect(g.mostRunning).toBe(1);
  });

  it("does not serve a failed render again: the next request renders afresh", async () => {
    let fail = true;
    const metrics = new GatewayMetrics(() => 5);
    new Gauge({
      name: "test_failing",
      help: "fails its first render",
      registers: [metrics.registry],
      collect() {
        if (fail) throw new Error("collect failed");
        this.set(1);
      },
    });
    await expect(metrics.render()).rejects.toThrow("collect failed");
    fail = false;
    await turn();
    expect(await metrics.render()).toMatch(/^test_failing 1$/m);
  });
});
