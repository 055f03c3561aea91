/**
 * `npm run bench:pairs-pooled`: issue #12's command-path targets judged over every round of every recorded
 * `npm run bench:pairs` run (bench/results/*-pairs.json, the committed ones and any of this machine's), not
 * one run's six. A run's six rounds show a median only when all six fall on one side (98.4 %); a target
 * at the edge of what the least durable command does on this machine (the durable floors) is met in some
 * rounds and missed in others, run after run. Pooled, the sign test says which side the median of the
 * rounds is on, across the hours and VMs the runs had: the one-sided binomial probability of at most (or at
 * least) that many rounds meeting the target were its median exactly at the target; at ≤ 1 % the verdict
 * is given, else "not shown". Rounds of one run share their hour, so this is a verdict on the median over
 * the runs' conditions, not on any one hour. Runs of different one-at-a-time methods (`loneMethod`, below) are
 * pooled apart: a row per subject and method. Reads only; prints one table.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { table } from "./table.js";

/** What bench/pairs.ts records per subject (its `summary`). */
export interface PairsSummary {
  cpuPerFloor: number[];
  ratePerFloor: number[];
  loneP50Ms: number[];
  loneP99Ms: number[];
  pacedP99Ms: number[];
}

/** One recorded run, as far as pooling reads it. */
export interface PairsRun {
  startedAt: string;
  quick?: boolean;
  ok?: boolean;
  serviceSettings?: Record<string, string>;
  /** Where the one Nerve's SQLite engine ran (recorded since 086fefd, stop 53, when the run measures one Nerve). */
  sqliteWriter?: string;
  summary?: Record<string, PairsSummary>;
  /** How the run measured each subject one at a time (recorded since stop 58; the runs before it: `asymmetric`). */
  loneMethod?: LoneMethod;
  /** Where that phase's client ran (recorded since stop 58; the runs before it: `main`). */
  loneClient?: LoneClient;
  /** Commands one at a time not counted before that phase (recorded since stop 58 with the fresh and process methods). */
  loneWarmUp?: number;
}

/**
 * How a pairs run measures one command at a time. `fresh` (since stop 58): every subject on an instance
 * started for the phase alone — a new Nerve over the same file, a new floor store — after a lone warm-up
 * (one command per user, not counted). `asymmetric` (every run before): Nerve right after its own saturation
 * load on the same instance, each floor on a fresh store without a warm-up. `process` (since stop 59): as
 * `fresh`, each subject's service in a process of its own for the phase (bench/pairs-lone-child.ts), its
 * client in the bench's.
 */
export type LoneMethod = "fresh" | "asymmetric" | "process";
export const LONE_METHODS: readonly LoneMethod[] = ["fresh", "asymmetric", "process"];

/** Where a pairs run's one-at-a-time client ran: the bench's main thread, beside every subject's service, or a thread of its own. */
export type LoneClient = "main" | "worker";
export const LONE_CLIENTS: readonly LoneClient[] = ["main", "worker"];

/** The fresh method's warm-up in every run recorded before stop 59: one command per user. */
const USUAL_WARM_UP = 1_000;

/**
 * The method a recorded run used (`asymmetric` for the runs that did not record one), where its client ran, and
 * its warm-up when not the usual one (the process method's default since stop 59), as pooling names them.
 */
export const loneMethodOf = (run: PairsRun): string =>
  `${run.loneMethod ?? "asymmetric"}${(run.loneClient ?? "main") === "worker" ? ", client on a thread of its own" : ""}${run.loneWarmUp !== undefined && run.loneWarmUp !== USUAL_WARM_UP ? `, after ${run.loneWarmUp} not counted` : ""}`;

/** Issue #12's command-path targets (bench/pairs.ts judges each run by them, and records them). */
export const ISSUE_12_TARGETS = { cpu: 2.0, rate: 0.5, loneP50Ms: 1.5, loneP99Ms: 5, pacedP99Ms: 20 } as const;

const T = ISSUE_12_TARGETS;
/** The targets as pooling judges them, each on its series of a run's summary. */
export const POOLED_TARGETS: { name: string; of: (s: PairsSummary) => number[]; meets: (v: number) => boolean }[] = [
  { name: `machine CPU ÷ floor's ≤ ${T.cpu}`, of: (s) => s.cpuPerFloor, meets: (v) => v <= T.cpu },
  { name: `rate ÷ floor's ≥ ${T.rate}`, of: (s) => s.ratePerFloor, meets: (v) => v >= T.rate },
  { name: `one at a time p50 ≤ ${T.loneP50Ms} ms`, of: (s) => s.loneP50Ms, meets: (v) => v <= T.loneP50Ms },
  { name: `one at a time p99 ≤ ${T.loneP99Ms} ms`, of: (s) => s.loneP99Ms, meets: (v) => v <= T.loneP99Ms },
  { name: `open loop p99 ≤ ${T.pacedP99Ms} ms`, of: (s) => s.pacedP99Ms, meets: (v) => v <= T.pacedP99Ms },
];

/** P(X ≤ k) for X ~ Binomial(n, ½). */
export function binomialAtMost(k: number, n: number): number {
  let term = 2 ** -n; // C(n, 0) / 2^n
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    sum += term;
    term = (term * (n - i)) / (i + 1);
  }
  return Math.min(1, sum);
}

/** The pooled verdict on a target: met in `met` of `n` rounds; the sign test's one-sided p on the side the rounds lean to. */
export function pooledVerdict(met: number, n: number, level = 0.01): { p: number; verdict: "met" | "missed" | "not shown" } {
  if (n === 0) return { p: 1, verdict: "not shown" };
  const missedP = binomialAtMost(met, n);
  const metP = binomialAtMost(n - met, n);
  if (missedP <= level) return { p: missedP, verdict: "missed" };
  if (metP <= level) return { p: metP, verdict: "met" };
  return { p: Math.min(missedP, metP), verdict: "not shown" };
}

/**
 * The subject a run's summary key stands for: Nerve with its SQLite engine named (as the run recorded it, or
 * its NERVE_SQLITE_WRITER, or the default of its day: the write worker before stop 53's `auto`,
 * 2026-12-06T22:00Z, inline on two cores after); "durable floor + contract" under the name its first runs
 * gave it ("contract floor", which bench:commands' section 1c already meant otherwise).
 */
export function subjectOf(key: string, run: PairsRun): string {
  if (key === "contract floor") return "durable floor + contract";
  if (key !== "Nerve") return key;
  const engine = run.sqliteWriter ?? run.serviceSettings?.NERVE_SQLITE_WRITER;
  if (engine === "inline" || engine === "main") return "Nerve (inline)";
  if (engine === "worker") return "Nerve (worker)";
  return run.startedAt < "2026-12-06T22:00:00Z" ? "Nerve (worker)" : "Nerve (inline)";
}

/**
 * Rounds met and rounds measured per subject and target, over `runs` (quick or failed runs left out); the
 * key is the subject and the run's one-at-a-time method ("Nerve (inline), one at a time fresh").
 */
export function pool(runs: PairsRun[]): Map<string, { runs: number; met: number[]; n: number[] }> {
  const out = new Map<string, { runs: number; met: number[]; n: number[] }>();
  for (const run of runs) {
    if (run.quick || run.ok === false || !run.summary) continue;
    for (const [key, s] of Object.entries(run.summary)) {
      const subject = `${subjectOf(key, run)}, one at a time ${loneMethodOf(run)}`;
      const t = out.get(subject) ?? { runs: 0, met: POOLED_TARGETS.map(() => 0), n: POOLED_TARGETS.map(() => 0) };
      t.runs++;
      POOLED_TARGETS.forEach((target, i) => {
        const values = target.of(s);
        t.met[i]! += values.filter(target.meets).length;
        t.n[i]! += values.length;
      });
      out.set(subject, t);
    }
  }
  return out;
}

function main(): void {
  const dir = fileURLToPath(new URL("./results/", import.meta.url));
  const files = readdirSync(dir).filter((f) => f.endsWith("-pairs.json") && !f.startsWith("latest")).sort();
  const runs = files.map((f) => JSON.parse(readFileSync(dir + f, "utf8")) as PairsRun);
  const pooled = pool(runs);
  const used = runs.filter((r) => !r.quick && r.ok !== false && r.summary);
  const cell = (met: number, n: number) => {
    const v = pooledVerdict(met, n);
    return `${met} of ${n}: ${v.verdict}${v.verdict === "not shown" ? "" : ` (p ${v.p < 1e-4 ? v.p.toExponential(1) : v.p.toFixed(4)})`}`;
  };
  console.log(
    table(
      `Issue #12's command-path targets over every recorded pairs run (${used.length} runs, ${used[0]?.startedAt ?? "–"} to ${used.at(-1)?.startedAt ?? "–"}; ${[...new Set(used.map(loneMethodOf))].map((m) => `${used.filter((r) => loneMethodOf(r) === m).length} measured one at a time ${m}`).join("; ")}): rounds met, and the sign test's verdict on the median at 1 %`,
      ["subject", "runs", ...POOLED_TARGETS.map((t) => t.name)],
      [...pooled].map(([subject, t]) => [subject, t.runs, ...POOLED_TARGETS.map((_, i) => cell(t.met[i]!, t.n[i]!))]),
    ),
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
