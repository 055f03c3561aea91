/**
 * What `nerve status` gathers — every instance's own answer on `nerve.admin.status`, and the streams
 * and durable consumers read through JetStream — and the rules that call it healthy.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { withoutCredentials } from "../nats/connection.js";
import { Consumers, Streams, encodeJson, decodeJson } from "../../contracts/index.js";
import { AdminSubjects } from "../api/admin-subjects.js";
import { INSTANCE_HEADER } from "../api/wire.js";
import type { InstanceStatus } from "../api/instance-status.js";
import { PARTITIONS } from "../cluster/partition.js";

/** The thresholds of the health rules. */
export interface HealthLimits {
  /** Most pending + ack-pending events of one of Nerve's consumers. */
  maxLag: number;
  /** Longest an unpublished event may wait in the outbox (ms). */
  maxOutboxAgeMs: number;
  /** Longest a due timer may stay unfired (ms). */
  maxTimerDelayMs: number;
}

/** One stream. */
export interface StreamReport {
  name: string;
  messages: number;
  bytes: number;
  replicas: number;
}

/** One durable consumer, over every stream it reads. */
export interface ConsumerReport {
  name: string;
  /** One of Nerve's own (judged by the rules), or an external subscriber's durable (shown only). */
  nerve: boolean;
  streams: string[];
  pending: number;
  ack_pending: number;
  dead_letters: number;
  /** The instances running it now. */
  runs_on: string[];
}

/** Everything `status` shows. */
export interface StatusReport {
  healthy: boolean;
  /** Each broken rule, in words. */
  problems: string[];
  nats_url: string;
  checked_at: string;
  instances: InstanceStatus[];
  partitions: { total: number; unowned: number[] };
  streams: StreamReport[];
  consumers: ConsumerReport[];
  outbox: InstanceStatus["outbox"] | null;
  timers: InstanceStatus["timers"] | null;
}

/** Quiet after the last answer that ends the gathering when no answer names the members to wait for (SQLite: one instance). */
const STALL_MS = 500;
/** Quiet after the last answer once every named member answered. */
const SETTLE_MS = 100;

/**
 * Asks every instance for its status. When the answers name their lease groups' live members
 * (PostgreSQL), waits until each member answered or `waitMs` passed, and puts those that did not in
 * `missing`; else takes answers until `waitMs`, or 500 ms without one. (It stopped at 500 ms of quiet
 * whatever the members: an instance paused for 800 ms — a GC pause, a starved CPU — was left out, and its
 * partitions and consumers reported as owned by nobody, `--wait` or not.)
 */
export async function gatherInstances(nc: NatsConnection, waitMs: number, failures: string[] = [], missing: string[] = []): Promise<InstanceStatus[]> {
  const out: InstanceStatus[] = [];
  const answered = new Set<string>();
  const members = new Set<string>();
  const started = performance.now();
  try {
    const answers = await nc.requestMany(AdminSubjects.Status, encodeJson({}), { strategy: "timer", maxWait: waitMs });
    const it = answers[Symbol.asyncIterator]();
    let lastAt = started;
    try {
      for (;;) {
        // Members named and all answered: a short quiet for answers naming more (a list read before one joined).
        const allIn = members.size > 0 && [...members].every((id) => answered.has(id));
        const until = members.size > 0 && !allIn ? started + waitMs : Math.min(started + waitMs, lastAt + (allIn ? SETTLE_MS : STALL_MS));
        let timer: NodeJS.Timeout | undefined;
        const next = await Promise.race([it.next(), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), Math.max(0, until - performance.now()))))]).finally(() => clearTimeout(timer));
        if (!next || next.done) break;
        lastAt = performance.now();
        const m = next.value;
        const who = m.headers?.get(INSTANCE_HEADER) || undefined;
        if (who) answered.add(who);
        const d = decodeJson(m.data);
        const reply = d.ok ? (d.value as { ok?: boolean; result?: InstanceStatus; error?: { message?: unknown } }) : undefined;
        if (reply?.ok && reply.result) {
          out.push(reply.result);
          answered.add(reply.result.instance);
          for (const id of reply.result.members ?? []) members.add(id);
        } else {
          // An instance that answered but could not read its status: said, not taken for absent (its
          // partitions would read as unowned, its consumers as running nowhere).
          failures.push(`${who ?? "an instance"} answered but could not read its status: ${String(reply?.error?.message ?? (d.ok ? "not a status reply" : "an undecodable reply")).slice(0, 300)}`);
        }
      }
    } finally {
      // Ends the iterator now: its return() would wait for the next() still out after a quiet spell, until
      // the request's maxWait. (The request's own timer ends it at maxWait.)
      (answers as unknown as { stop(): void }).stop();
    }
  } catch (err) {
    // No responders: no instance runs. Anything else is the request's own failure.
    if (!(err instanceof Error && /no responders/i.test(`${err.name} ${err.message}`))) throw err;
  }
  missing.push(...[...members].filter((id) => !answered.has(id)).sort());
  return out.sort((a, b) => a.instance.localeCompare(b.instance));
}

/** Reads the account's streams and their durable consumers through JetStream. */
export async function readStreams(nc: NatsConnection): Promise<{ streams: StreamReport[]; lags: Array<{ consumer: string; stream: string; pending: number; ackPending: number }> }> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const streams: StreamReport[] = [];
  const lags: Array<{ consumer: string; stream: string; pending: number; ackPending: number }> = [];
  for await (const si of jsm.streams.list()) {
    streams.push({ name: si.config.name, messages: si.state.messages, bytes: si.state.bytes, replicas: si.config.num_replicas });
    for await (const ci of jsm.consumers.list(si.config.name)) {
      // Ordered consumers (a `tail`, an external reader) are ephemeral: only durables have a lag to watch.
      if (!ci.config.durable_name) continue;
      lags.push({ consumer: ci.name, stream: si.config.name, pending: ci.num_pending, ackPending: ci.num_ack_pending });
    }
  }
  return { streams: streams.sort((a, b) => a.name.localeCompare(b.name)), lags };
}

/** Gathers everything and applies the health rules. */
export async function statusReport(nc: NatsConnection, natsUrl: string, waitMs: number, limits: HealthLimits): Promise<StatusReport> {
  const failures: string[] = [];
  const missing: string[] = [];
  const [instances, { streams, lags }] = await Promise.all([gatherInstances(nc, waitMs, failures, missing), readStreams(nc)]);
  for (const id of missing) {
    failures.push(`instance ${id} is a live member (it renewed its membership within a lease) but did not answer within ${waitMs} ms — paused, overloaded or cut off from NATS: what it owns shows as owned by nobody below (--wait for longer)`);
  }
  const first = instances[0];
  const nerveConsumers = new Set<string>(instances.length > 0 ? instances.flatMap((i) => i.consumers.known) : Object.values(Consumers));
  const byName = new Map<string, ConsumerReport>();
  for (const name of nerveConsumers) byName.set(name, { name, nerve: true, streams: [], pending: 0, ack_pending: 0, dead_letters: 0, runs_on: [] });
  for (const l of lags) {
    const c = byName.get(l.consumer) ?? { name: l.consumer, nerve: false, streams: [], pending: 0, ack_pending: 0, dead_letters: 0, runs_on: [] };
    byName.set(l.consumer, c);
    c.streams.push(l.stream);
    c.pending += l.pending;
    c.ack_pending += l.ackPending;
  }
  for (const i of instances) for (const name of i.consumers.active) byName.get(name)?.runs_on.push(i.instance);
  for (const [name, n] of Object.entries(first?.dead_letters ?? {})) {
    const c = byName.get(name);
    if (c) c.dead_letters = n;
  }
  const owned = new Set(instances.flatMap((i) => i.partitions));
  const report: StatusReport = {
    healthy: true,
    problems: [],
    nats_url: withoutCredentials(natsUrl),
    checked_at: new Date().toISOString(),
    instances,
    partitions: { total: PARTITIONS, unowned: Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => !owned.has(p)) },
    streams,
    consumers: [...byName.values()].sort((a, b) => Number(b.nerve) - Number(a.nerve) || a.name.localeCompare(b.name)),
    outbox: first?.outbox ?? null,
    timers: first?.timers ?? null,
  };
  report.problems = [...failures, ...problemsOf(report, limits, waitMs)];
  report.healthy = report.problems.length === 0;
  return report;
}

/** The health rules (the `status --help` lists them). */
export function problemsOf(r: StatusReport, limits: HealthLimits, waitMs: number): string[] {
  const problems: string[] = [];
  if (r.instances.length === 0) problems.push(`no Nerve instance answered ${AdminSubjects.Status} within ${waitMs} ms`);
  const names = new Set(r.streams.map((s) => s.name));
  for (const s of Object.keys(Streams)) if (!names.has(s)) problems.push(`stream ${s} is missing`);
  if (r.instances.length > 0 && r.partitions.unowned.length > 0) {
    problems.push(`${r.partitions.unowned.length} of ${r.partitions.total} partitions have no owner (${ranges(r.partitions.unowned)}): their commands get no answer`);
  }
  for (const c of r.consumers.filter((c) => c.nerve)) {
    if (r.instances.length > 0 && c.runs_on.length === 0) problems.push(`consumer ${c.name} runs on no instance`);
    if (c.dead_letters > 0) problems.push(`consumer ${c.name} has ${c.dead_letters} dead letter${c.dead_letters === 1 ? "" : "s"}`);
    if (c.pending + c.ack_pending > limits.maxLag) problems.push(`consumer ${c.name} is ${c.pending + c.ack_pending} events behind (limit ${limits.maxLag})`);
  }
  for (const i of r.instances) {
    for (const s of i.relay?.held_streams ?? []) problems.push(`instance ${i.instance} holds back ${s}'s events: the stream failed (its log says how; they go out once it answers)`);
    const n = i.relay?.held_aggregates ?? 0;
    if (n > 0) problems.push(`instance ${i.instance} holds back the events of ${n} aggregate${n === 1 ? "" : "s"} behind rows JetStream refused (its log names them)`);
  }
  const age = r.outbox?.oldest_age_ms ?? null;
  if (age !== null && age > limits.maxOutboxAgeMs) {
    problems.push(`outbox not draining: ${r.outbox!.pending} events unpublished, the oldest for ${seconds(age)} (limit ${seconds(limits.maxOutboxAgeMs)})`);
  }
  const late = r.timers?.oldest_overdue_ms ?? null;
  if (late !== null && late > limits.maxTimerDelayMs) {
    problems.push(`timers not firing: ${r.timers!.overdue} due, the oldest ${seconds(late)} late (limit ${seconds(limits.maxTimerDelayMs)})`);
  }
  return problems;
}

/** `0-15,32,40-63` */
export function ranges(ns: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    out.push(j === i ? `${ns[i]}` : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return out.join(",");
}

/** `45 s`, `1.5 s` */
export function seconds(ms: number): string {
  return `${ms >= 10_000 ? Math.round(ms / 1000) : Math.round(ms / 100) / 10} s`;
}
