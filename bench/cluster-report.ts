/** The cluster bench's figures and printed tables. */
import type { CommandLoadResult } from "./command-load.js";
import { fmt, table, type Cell } from "./table.js";

/** One steady-state point: a fixed time of durable commands through some instances. */
export interface Point {
  label: string;
  instances: number;
  routing: string;
  database: "postgresql" | "sqlite";
  load: CommandLoadResult;
  failed: number;
  /** Machine CPU per command over the measured window, µs. */
  cpuUsPerCommand: {
    /** Every Nerve process together. */
    nerve: number;
    byProcess: Record<string, number>;
    natsServer: number;
    /** This process: the load generator. */
    bench: number;
    /** Nerve + nats-server + bench: the brief's machine CPU. */
    machine: number;
    /** The PostgreSQL backends serving the bench's database (0 on SQLite, whose work is inside Nerve). */
    postgresBackends: number;
    machineWithPostgres: number;
  };
  /** Commands/s the machine's cores allow at that cost: cores × 1e6 ÷ µs per command. */
  coresAllowPerSecond: number;
  coresAllowWithPostgresPerSecond: number;
  /** Group commits over the window, and how often and how long they waited for the outbox relay (admission). */
  groupCommits: { transactions: number; writes: number; averageBatch: number; admissionWaits: number; admissionWaitSeconds: number } | undefined;
  /** Requests an instance passed on to their owner (forwarding mode). */
  forwarded: number | undefined;
  /** Whether the previous load was fully published and consumed before this one. */
  drainedBefore: boolean;
}

/** One hand-off run: a graceful leave, a join, a crash. */
export interface HandoffRun {
  run: number;
  /** `sigtermToAllHeldMs`: from SIGTERM until the survivor holds every partition (by the leases). */
  leave: { from: string; to: string; partitions: number; maxGapMs: number; p50GapMs: number; missing: number; sigtermToExitMs: number; sigtermToAllHeldMs: number; firstAckAfterHeldMs: number };
  /** `startMs`: Nerve's own start in the joining process; `startToSpreadMs`: from that start until the leases show both instances. */
  join: { from: string; to: string; partitions: number; maxGapMs: number; p50GapMs: number; missing: number; startMs: number; startToSpreadMs: number; firstAckAfterSpreadMs: number };
  /** `maxAckGapMs`: the per-partition gap by acknowledgements, as for a leave; `firstAckAfterTakeoverMs`: its part after the leases moved. */
  crash: { from: string; to: string; takeoverMs: number; partitions: number; maxAckGapMs: number; missing: number; firstAckAfterTakeoverMs: number };
  /** The longest any command waited, retries included, from the leave to the crash's recovery. */
  worstWaitMs: number;
  retriedSoFar: Record<string, number>;
}

/** The fencing comparison. */
export interface Fencing {
  comparison: "postgresql-sole-ownership" | "sqlite";
  fenced: Point[];
  unfenced: Point[];
  cpuRatio: number;
  cpuRatioWithPostgres: number;
  rateRatio: number;
  target: number;
}

/** Throughput and latency of each point, against the raw publish rate. */
export function pointTable(title: string, points: Point[], rawPerSecond: number): string {
  return table(title, ["point", "routing", "commands", "commands/s", "÷ raw publish", "p50 ms", "p99 ms", "max ms", "failed", "avg batch", "admission waits (s)", "forwarded"], points.map((p) => [
    p.label,
    p.routing,
    p.load.sent,
    Math.round(p.load.perSecond),
    (p.load.perSecond / rawPerSecond).toFixed(3),
    p.load.latency.p50,
    p.load.latency.p99,
    p.load.latency.max,
    p.failed,
    p.groupCommits ? p.groupCommits.averageBatch : NaN,
    p.groupCommits ? `${p.groupCommits.admissionWaits} (${fmt(p.groupCommits.admissionWaitSeconds)})` : "n/a",
    p.forwarded ?? NaN,
  ]));
}

/** Where each point's CPU went, and the rate the cores allow at that cost. */
export function pointCpuTable(title: string, points: Point[], rawUsPerMessage: number): string {
  const rows: Cell[][] = points.map((p) => [
    p.label,
    p.cpuUsPerCommand.nerve,
    p.cpuUsPerCommand.natsServer,
    p.cpuUsPerCommand.bench,
    p.cpuUsPerCommand.machine,
    Math.round(p.coresAllowPerSecond),
    p.cpuUsPerCommand.postgresBackends,
    p.cpuUsPerCommand.machineWithPostgres,
    Math.round(p.coresAllowWithPostgresPerSecond),
  ]);
  const text = table(title, ["point", "Nerve (all)", "nats-server", "bench", "machine", "rate 2 cores allow", "+ PostgreSQL", "machine + PG", "rate incl. PG"], rows);
  const per = points
    .filter((p) => p.instances > 1)
    .map((p) => `${p.label}: ${Object.entries(p.cpuUsPerCommand.byProcess).filter(([k]) => k.startsWith("nerve:")).map(([k, v]) => `${k.slice(6)} ${fmt(v)}`).join(", ")}`);
  return `${text}\n   raw publish: ${fmt(rawUsPerMessage)} µs of machine CPU per message${per.length ? `\n   Nerve µs per command by instance — ${per.join("; ")}` : ""}`;
}

/** Fenced vs unfenced (or vs SQLite while the hook is missing). */
export function fencingTable(f: Fencing): string {
  const rows: Cell[][] = [...f.fenced, ...f.unfenced].map((p) => [
    p.label,
    p.database,
    Math.round(p.load.perSecond),
    p.load.latency.p50,
    p.load.latency.p99,
    p.cpuUsPerCommand.nerve,
    p.cpuUsPerCommand.natsServer,
    p.cpuUsPerCommand.machine,
    p.cpuUsPerCommand.postgresBackends,
    p.cpuUsPerCommand.machineWithPostgres,
    p.groupCommits ? p.groupCommits.averageBatch : NaN,
  ]);
  const what = f.comparison === "sqlite" ? "the same instance on SQLite (the startNerve hook for an unfenced PostgreSQL instance is missing)" : "one instance on PostgreSQL without leases or fence checks (overrides.ownership = \"sole\")";
  const text = table(`2. Fencing and routing cost: one instance on PostgreSQL with leases + fence checks vs ${what}`, ["run", "database", "commands/s", "p50 ms", "p99 ms", "Nerve µs/cmd", "nats µs/cmd", "machine µs/cmd", "PG µs/cmd", "machine + PG", "avg batch"], rows);
  const verdict = (r: number) => `${r.toFixed(3)} (${r <= f.target ? "within" : "OVER"} ${f.target})`;
  const lines = [
    `   machine CPU per command, fenced ÷ ${f.comparison === "sqlite" ? "SQLite" : "unfenced"}: ${verdict(f.cpuRatio)}; with PostgreSQL's backends counted: ${verdict(f.cpuRatioWithPostgres)}`,
    `   commands/s, fenced ÷ ${f.comparison === "sqlite" ? "SQLite" : "unfenced"}: ${f.rateRatio.toFixed(3)}`,
  ];
  if (f.comparison === "sqlite") lines.push("   (PostgreSQL vs SQLite differs in more than fencing: this bounds fencing + routing + the database change, it does not isolate fencing)");
  return `${text}\n${lines.join("\n")}`;
}

const stat = (xs: number[]) => {
  const ok = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return { p50: ok.length ? ok[Math.floor((ok.length - 1) / 2)]! : NaN, max: ok.length ? ok[ok.length - 1]! : NaN };
};

/** Hand-off gaps and takeover times per run, with p50 and max over the runs. */
export function handoffTable(runs: HandoffRun[], resolutionMs: number): string {
  const rows: Cell[][] = runs.map((r) => [
    `run ${r.run}`,
    r.leave.partitions,
    r.leave.maxGapMs,
    r.leave.p50GapMs,
    r.leave.sigtermToAllHeldMs,
    r.leave.sigtermToExitMs,
    r.join.partitions,
    r.join.maxGapMs,
    r.join.startToSpreadMs,
    r.crash.takeoverMs,
    r.crash.maxAckGapMs,
    r.worstWaitMs,
  ]);
  const col = (f: (r: HandoffRun) => number) => stat(runs.map(f));
  const cols = [
    (r: HandoffRun) => r.leave.maxGapMs,
    (r: HandoffRun) => r.leave.sigtermToAllHeldMs,
    (r: HandoffRun) => r.leave.sigtermToExitMs,
    (r: HandoffRun) => r.join.maxGapMs,
    (r: HandoffRun) => r.join.startToSpreadMs,
    (r: HandoffRun) => r.crash.takeoverMs,
    (r: HandoffRun) => r.crash.maxAckGapMs,
    (r: HandoffRun) => r.worstWaitMs,
  ].map(col);
  const summary = (k: "p50" | "max"): Cell[] => [`${k} over runs`, "", cols[0]![k], "", cols[1]![k], cols[2]![k], "", cols[3]![k], cols[4]![k], cols[5]![k], cols[6]![k], cols[7]![k]];
  rows.push(summary("p50"), summary("max"));
  const missing = runs.reduce((a, r) => a + r.leave.missing + r.join.missing + r.crash.missing, 0);
  const text = table(
    "3. Hand-offs with 2 instances (ms): graceful leave (SIGTERM) and join — per-partition gap from the old owner's last acknowledgement to the new owner's first, max over partitions; crash (kill -9) — takeover until every partition is held by live instances",
    ["run", "leave: partitions", "leave: max gap", "leave: p50 gap", "SIGTERM → all re-held", "SIGTERM → exit", "join: partitions", "join: max gap", "join: start → spread", "kill -9: takeover", "kill -9: max ack gap", "worst command wait"],
    rows,
  );
  const after = (f: (r: HandoffRun) => number) => fmt(stat(runs.map(f)).max);
  const decomposition = `   of which after the leases had moved (slowest partition's first acknowledgement, max over runs): leave ${after((r) => r.leave.firstAckAfterHeldMs)}, join ${after((r) => r.join.firstAckAfterSpreadMs)}, kill -9 ${after((r) => r.crash.firstAckAfterTakeoverMs)}`;
  return `${text}\n${decomposition}\n   targets (issue #11): gap < 1,000 ms per partition (graceful), takeover < 8,000 ms (crash). Gaps include up to ~${fmt(resolutionMs)} ms of spacing between one partition's commands at this rate${missing ? `; ${missing} partition moves not measurable (no acknowledgement on one side)` : ""}`;
}

/** All-in-one vs commands apart from consumers + gateway. */
export function rolesTable(allInOne: Point[], split: Point): string {
  const rows: Cell[][] = [...allInOne, split].map((p) => [
    p.label === "roles split" ? "commands | consumers,gateway (2 processes)" : `all-in-one (${p.label})`,
    Math.round(p.load.perSecond),
    p.load.latency.p50,
    p.load.latency.p99,
    p.cpuUsPerCommand.nerve,
    p.cpuUsPerCommand.machine,
    Math.round(p.coresAllowPerSecond),
    p.cpuUsPerCommand.machineWithPostgres,
  ]);
  const byProcess = Object.entries(split.cpuUsPerCommand.byProcess).filter(([k]) => k.startsWith("nerve:")).map(([k, v]) => `${k.slice(6)} ${fmt(v)}`).join(", ");
  return `${table("4. Roles: one process with every role vs commands in one process and consumers + gateway in another (PostgreSQL, fenced)", ["layout", "commands/s", "p50 ms", "p99 ms", "Nerve µs/cmd", "machine µs/cmd", "rate 2 cores allow", "machine + PG"], rows)}\n   split, Nerve µs per command by process: ${byProcess}`;
}
