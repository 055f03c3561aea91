/** bench/pairs-pooled.ts: the sign test over pooled rounds, and which Nerve each recorded run measured. */
import { describe, expect, it } from "vitest";
import { binomialAtMost, loneMethodOf, pool, pooledVerdict, subjectOf, type PairsRun, type PairsSummary } from "../../bench/pairs-pooled.js";

const summary = (cpu: number[], lone99 = cpu.map(() => 3)): PairsSummary => ({ cpuPerFloor: cpu, ratePerFloor: cpu.map((c) => 1 / c), loneP50Ms: cpu.map(() => 1), loneP99Ms: lone99, pacedP99Ms: cpu.map(() => 30) });

describe("bench:pairs-pooled", () => {
  it("takes the binomial tail of a fair coin", () => {
    expect(binomialAtMost(0, 6)).toBeCloseTo(1 / 64, 12);
    expect(binomialAtMost(6, 6)).toBe(1);
    expect(binomialAtMost(2, 12)).toBeCloseTo(79 / 4096, 12);
    expect(binomialAtMost(15, 30)).toBeGreaterThan(0.5);
  });

  it("gives a verdict only when the rounds lean to one side at 1 %", () => {
    expect(pooledVerdict(6, 30)).toMatchObject({ verdict: "missed" });
    expect(pooledVerdict(24, 30)).toMatchObject({ verdict: "met" });
    expect(pooledVerdict(13, 30)).toMatchObject({ verdict: "not shown" });
    // One run's six rounds never reach 1 %: all six on one side is 1.6 %.
    expect(pooledVerdict(0, 6)).toMatchObject({ verdict: "not shown" });
    expect(pooledVerdict(0, 0)).toEqual({ p: 1, verdict: "not shown" });
  });

  it("names Nerve's engine: the run's setting, else the default of its day", () => {
    expect(subjectOf("Nerve", { startedAt: "2026-12-06T17:27:17Z" })).toBe("Nerve (worker)");
    expect(subjectOf("Nerve", { startedAt: "2026-12-06T17:34:24Z", serviceSettings: { NERVE_SQLITE_WRITER: "inline" } })).toBe("Nerve (inline)");
    expect(subjectOf("Nerve", { startedAt: "2026-12-07T05:18:24Z" })).toBe("Nerve (inline)");
    expect(subjectOf("Nerve", { startedAt: "2026-12-07T05:18:24Z", sqliteWriter: "worker" })).toBe("Nerve (worker)");
    expect(subjectOf("Nerve (worker)", { startedAt: "2026-12-07T05:18:24Z" })).toBe("Nerve (worker)");
    expect(subjectOf("durable floor (main thread)", { startedAt: "2026-12-06T17:27:17Z" })).toBe("durable floor (main thread)");
    // The durable floor + contract, under the name its first runs recorded, is one subject with the later ones.
    expect(subjectOf("contract floor", { startedAt: "2026-12-07T07:36:07Z" })).toBe("durable floor + contract");
    expect(subjectOf("durable floor + contract", { startedAt: "2026-12-07T09:00:00Z" })).toBe("durable floor + contract");
  });

  it("pools the rounds of every full run per subject and target, and leaves quick and failed runs out", () => {
    const runs: PairsRun[] = [
      { startedAt: "2026-12-07T01:00:00Z", summary: { Nerve: summary([2.5, 1.9, 3]), "durable floor (main thread)": summary([1.8, 2.2, 1.9], [4, 6, 4]) } },
      { startedAt: "2026-12-07T02:00:00Z", summary: { "Nerve (inline)": summary([2.1, 2.2]) } },
      { startedAt: "2026-12-07T03:00:00Z", quick: true, summary: { Nerve: summary([1, 1]) } },
      { startedAt: "2026-12-07T04:00:00Z", ok: false, summary: { Nerve: summary([1, 1]) } },
    ];
    const pooled = pool(runs);
    expect([...pooled.keys()]).toEqual(["Nerve (inline), one at a time asymmetric", "durable floor (main thread), one at a time asymmetric"]);
    // CPU ≤ 2: 1 of 5 for Nerve (inline) over the two runs; the lone p99 ≤ 5 ms: 2 of 3 for the durable floor.
    expect(pooled.get("Nerve (inline), one at a time asymmetric")).toMatchObject({ runs: 2, met: [1, 1, 5, 5, 0], n: [5, 5, 5, 5, 5] });
    expect(pooled.get("durable floor (main thread), one at a time asymmetric")).toMatchObject({ runs: 1, met: [2, 2, 3, 2, 0], n: [3, 3, 3, 3, 3] });
  });

  it("pools runs of different one-at-a-time methods apart (a run without one recorded is asymmetric)", () => {
    const runs: PairsRun[] = [
      { startedAt: "2026-12-07T01:00:00Z", summary: { Nerve: summary([2.5, 1.9], [6, 7]) } },
      { startedAt: "2026-12-08T01:00:00Z", loneMethod: "fresh", summary: { Nerve: summary([2.5, 2.5, 2.5], [4, 4, 6]), "durable floor + contract": summary([1.5], [3]) } },
      { startedAt: "2026-12-08T02:00:00Z", loneMethod: "asymmetric", summary: { Nerve: summary([1.5], [5]) } },
    ];
    expect(loneMethodOf(runs[0]!)).toBe("asymmetric");
    const pooled = pool(runs);
    expect([...pooled.keys()].sort()).toEqual(["Nerve (inline), one at a time asymmetric", "Nerve (inline), one at a time fresh", "durable floor + contract, one at a time fresh"]);
    // The lone p99 ≤ 5 ms: 1 of 3 in the asymmetric runs (6, 7, 5), 2 of 3 in the fresh one (4, 4, 6).
    expect(pooled.get("Nerve (inline), one at a time asymmetric")).toMatchObject({ runs: 2, met: [2, 2, 3, 1, 0], n: [3, 3, 3, 3, 3] });
    expect(pooled.get("Nerve (inline), one at a time fresh")).toMatchObject({ runs: 1, met: [0, 0, 3, 2, 0], n: [3, 3, 3, 3, 3] });
    // The client's thread is part of the method: a run with its client on a thread of its own is pooled apart.
    const own = pool([...runs, { startedAt: "2026-12-08T03:00:00Z", loneMethod: "fresh", loneClient: "worker", summary: { Nerve: summary([2.5], [4]) } }]);
    expect(own.get("Nerve (inline), one at a time fresh")).toMatchObject({ runs: 1 });
    expect(own.get("Nerve (inline), one at a time fresh, client on a thread of its own")).toMatchObject({ runs: 1, met: [0, 0, 1, 1, 0], n: [1, 1, 1, 1, 1] });
    expect(loneMethodOf({ startedAt: "2026-12-08T03:00:00Z", loneClient: "main" })).toBe("asymmetric");
    // So is a warm-up other than the usual one command per user (the process method's default).
    const warmer = pool([...runs, { startedAt: "2026-12-08T04:00:00Z", loneMethod: "process", loneClient: "worker", loneWarmUp: 5_000, summary: { Nerve: summary([2.5], [4]) } }, { startedAt: "2026-12-08T05:00:00Z", loneMethod: "process", loneClient: "worker", loneWarmUp: 1_000, summary: { Nerve: summary([2.5], [6]) } }]);
    expect(warmer.get("Nerve (inline), one at a time process, client on a thread of its own, after 5000 not counted")).toMatchObject({ runs: 1, met: [0, 0, 1, 1, 0] });
    expect(warmer.get("Nerve (inline), one at a time process, client on a thread of its own")).toMatchObject({ runs: 1, met: [0, 0, 1, 0, 0] });
  });
});
