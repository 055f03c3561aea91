/** The bench's printed tables, one per section. */
import type { ActivationResult, ActorMemoryResult } from "./actor-activation.js";
import { failures } from "./command-load.js";
import type { DurablePhase } from "./durable-commands.js";
import type { LatencySummary } from "./percentiles.js";
import type { RawPublishResult } from "./raw-publish.js";
import { fmt, table, type Cell } from "./table.js";

/** Section 1. */
export function rawTable(rows: RawPublishResult[], bytes: number, window: number): string {
  return table(
    `1. Raw JetStream publish (file stream, ${bytes}-byte messages, ${window} acks in flight)`,
    ["variant", "messages", "seconds", "msgs/s", "publisher CPU µs/msg", "nats-server CPU µs/msg", "both µs/msg"],
    rows.map((r) => [r.variant, r.messages, r.seconds, Math.round(r.perSecond), r.clientCpuUsPerMessage, r.serverCpuUsPerMessage ?? NaN, r.clientCpuUsPerMessage + (r.serverCpuUsPerMessage ?? NaN)]),
  );
}

/** The verdicts of section 2. */
export interface Verdicts {
  ratio: number;
  ratioTarget: number;
  p99TargetMs: number;
  /** Machine CPU (publisher + nats-server) per raw publish, µs. */
  rawCpuUsPerMessage?: number | undefined;
  /** The floor's rate ÷ the raw publish rate: the most any command service reaches here. */
  floorRatio?: number | undefined;
}

/** Section 2. */
export function durableTable(p: DurablePhase, inflight: number, rawPerSecond: number, v: Verdicts): string {
  const c = p.confirmation;
  const rows: Cell[][] = [
    ["commands (UpdateUserProfile, new bio each)", p.load.sent],
    ["aggregates", p.aggregates],
    ["requests in flight", inflight],
    ["failed replies", failures(p.load)],
    ["seconds to last reply", p.load.seconds],
    ["commands/s (replies)", Math.round(p.load.perSecond)],
    ["reply latency p50 ms", p.load.latency.p50],
    ["reply latency p90 ms", p.load.latency.p90],
    ["reply latency p99 ms", p.load.latency.p99],
    ["reply latency max ms", p.load.latency.max],
    ["seconds to full confirmation (first send → all in stream, outbox empty)", c?.totalSeconds ?? NaN],
    ["  of which after the last reply", c?.afterLastReplySeconds ?? NaN],
    ["end-to-end commands/s (confirmed)", Math.round(c?.endToEndPerSecond ?? NaN)],
    ["service event loop busy (utilization)", p.eventLoop.utilization],
    ["event loop busy µs per command", p.eventLoop.busyMsPerCommand * 1000],
    ["main-thread CPU µs per command", (p.eventLoop.mainThreadCpuMsPerCommand ?? NaN) * 1000],
    ["process CPU µs per command (all threads)", p.eventLoop.processCpuMsPerCommand * 1000],
    ["nats-server CPU µs per command (all threads)", (p.serverCpuMsPerCommand ?? NaN) * 1000],
    ["both µs per command (machine CPU)", (p.eventLoop.processCpuMsPerCommand + (p.serverCpuMsPerCommand ?? NaN)) * 1000],
    ["group commits (transactions)", p.writer.transactions],
    ["average batch (writes per transaction)", p.writer.averageBatch],
  ];
  const text = table("2. Durable commands through the service (NATS request → actor → SQLite group commit → reply)", ["measure", "value"], rows);
  const verdicts = table("   Verdicts", ["check", "value", "target", "met"], [
    ["commands/s ÷ raw publish msgs/s", v.ratio.toFixed(3), `≥ ${v.ratioTarget}`, v.ratio >= v.ratioTarget ? "yes" : "NO"],
    ["reply p99 ms", p.load.latency.p99.toFixed(2), `≤ ${v.p99TargetMs}`, p.load.latency.p99 <= v.p99TargetMs ? "yes" : "NO"],
    ["raw publish msgs/s (bare)", fmt(Math.round(rawPerSecond)), "", ""],
    // With both cores busy, rates stand in the inverse ratio of machine CPU per operation.
    ["ratio if CPU-bound: raw µs/msg ÷ command µs/command", ceilingRatio(p, v.rawCpuUsPerMessage), "", ""],
    ["floor ÷ raw: request-reply + publish, nothing else (1b)", v.floorRatio === undefined ? "n/a" : v.floorRatio.toFixed(3), "", ""],
    // Little's law: with a fixed window, mean latency is the window over the rate; p99 can only be lower than 25 ms if the rate is well above it.
    ["mean latency ms vs in-flight ÷ rate (Little's law)", `${p.load.latency.mean.toFixed(2)} vs ${((inflight / p.load.perSecond) * 1000).toFixed(2)}`, "", ""],
    [`rate for a ${v.p99TargetMs} ms mean at ${inflight} in flight`, fmt(Math.round(inflight / (v.p99TargetMs / 1000))), "", ""],
  ]);
  return `${text}\n${verdicts}`;
}

/** Section 3. */
export function scalingTable(phases: DurablePhase[], inflight: number, mailboxSize: number): string {
  return table(
    `3. Scaling with aggregates (${inflight} in flight; NERVE_MAILBOX_SIZE=${mailboxSize} so one actor can queue them all)`,
    ["aggregates", "commands", "seconds", "commands/s", "p50 ms", "p99 ms", "max ms", "failed", "commits", "avg batch", "loop busy", "ended by"],
    phases.map((p) => [
      p.aggregates,
      p.load.sent,
      p.load.seconds,
      Math.round(p.load.perSecond),
      p.load.latency.p50,
      p.load.latency.p99,
      p.load.latency.max,
      failures(p.load),
      p.writer.transactions,
      p.writer.averageBatch,
      p.eventLoop.utilization,
      p.load.cutShort ? "time cap" : "count",
    ]),
  );
}

const lat = (name: string, l: LatencySummary, rate: Cell = ""): Cell[] => [name, l.count, l.p50, l.p90, l.p99, l.max, rate];

/** Section 4. */
export function activationTable(a: ActivationResult): string {
  return table(
    `4. Actor activation from a snapshot (fresh Nerve, ${fmt(a.stored)} users stored; latencies in ms)`,
    ["measurement", "count", "p50", "p90", "p99", "max", "per second"],
    [
      lat("system.read on a cold actor, one at a time (in-process)", a.inProcessCold),
      lat("GetUser over NATS, cold id, one at a time", a.getUserCold),
      lat("GetUser over NATS, same ids warm", a.getUserWarm),
      lat(`system.read on cold actors, ${a.concurrent.window} concurrent`, a.concurrent.latency, fmt(Math.round(a.concurrent.perSecond))),
    ],
  );
}

/** Section 5. */
export function memoryTable(m: ActorMemoryResult): string {
  const note = m.gc === "unavailable" ? " — WITHOUT gc: figures include garbage" : m.gc === "runtime" ? " (gc enabled at run time)" : "";
  return table(`5. Heap per idle live actor${note}`, ["actors", "heap before MB", "heap after MB", "bytes/actor", "state JSON bytes", "activation s"], [
    [m.actors, m.heapBeforeMB, m.heapAfterMB, Math.round(m.bytesPerActor), Math.round(m.averageStateJsonBytes), m.activationSeconds],
  ]);
}

function ceilingRatio(p: DurablePhase, rawUs: number | undefined): string {
  if (rawUs === undefined || p.serverCpuMsPerCommand === undefined) return "n/a";
  const commandUs = (p.eventLoop.processCpuMsPerCommand + p.serverCpuMsPerCommand) * 1000;
  return `${(rawUs / commandUs).toFixed(3)} (${rawUs.toFixed(1)} ÷ ${commandUs.toFixed(1)})`;
}
