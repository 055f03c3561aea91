/** Drives commands at the service over NATS from a client connection, with a bounded window of requests. */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack, encodeMsgPack } from "../contracts/index.js";
import { shareOver, summarize, TAIL_MS, type LatencySummary } from "./percentiles.js";
import { atRate, runWindowed } from "./window.js";
import { table } from "./table.js";

/** A command load, as plain data so it can cross into the load worker. */
export interface LoadSpec {
  /** `register`: RegisterUser for each id once; `profile`: UpdateUserProfile round-robin over the ids, each with a new bio. */
  kind: "register" | "profile";
  ids: string[];
  count: number;
  inflight: number;
  /** Makes every bio of this load unique, so no update is a no-op. */
  tag: string;
  /** Stop starting commands at this epoch ms. */
  deadline: number;
  /** Reply timeout per request. */
  timeoutMs?: number;
  /**
   * Open loop: the i-th command is due `i / rate` seconds after the start, whether or not earlier ones
   * were answered (`inflight` is then only a safety bound), and its latency counts from when it was due,
   * so a stall is not hidden by the sender waiting it out (no coordinated omission).
   */
  rate?: number;
}

/** What a command load measured. */
export interface CommandLoadResult {
  sent: number;
  ok: number;
  /** Failed replies by error code (or `transport` for a request that got no reply). */
  failed: Record<string, number>;
  /** Events the successful replies reported. */
  events: number;
  seconds: number;
  perSecond: number;
  latency: LatencySummary;
  /** The shares (0–1) of commands whose latency was above each of {@link TAIL_MS} ms: the client's side of the service's tail shares (stage-breakdown.ts). */
  over: Record<number, number>;
  cutShort: boolean;
  /** Epoch ms when the first command was sent. */
  startedAt: number;
  /**
   * Open loop only: each latency split in two — from the command's due time until the client sent it (the
   * sender's own lateness: its 2 ms tick, and its thread waiting for a core or for its event loop), and from
   * the send until the reply arrived (NATS both ways, the service, the client's thread taking the reply).
   * Their tails tell a late sender from a slow service.
   */
  split?: { sendLag: LatencySummary; sendLagOver: Record<number, number>; roundTrip: LatencySummary; roundTripOver: Record<number, number> };
}

/** The i-th command of a load: subject and body. */
export function commandOf(spec: LoadSpec, i: number): { subject: string; body: unknown } {
  const id = spec.ids[i % spec.ids.length]!;
  return spec.kind === "register"
    ? { subject: `cmd.users.RegisterUser.${id}`, body: { email: `${id}@bench.example`, name: `Bench user ${i}` } }
    : { subject: `cmd.users.UpdateUserProfile.${id}`, body: { profile_data: { bio: `${spec.tag} #${i}` } } };
}

/** Sends the load's MessagePack commands, `inflight` at a time (or paced at `rate`), and times every reply. */
export async function runCommandLoad(nc: NatsConnection, spec: LoadSpec): Promise<CommandLoadResult> {
  const latencies = new Float64Array(spec.count);
  const sendLags = spec.rate ? new Float64Array(spec.count) : undefined;
  const failed: Record<string, number> = {};
  let ok = 0;
  let events = 0;
  // Headers are only read while a request is encoded, so one object serves every request.
  const h = natsHeaders();
  h.set("Content-Type", "application/msgpack");
  const startedAt = Date.now();
  const send = async (i: number, dueMs?: number) => {
    const c = commandOf(spec, i);
    const data = encodeMsgPack(c.body);
    const t0 = dueMs ?? performance.now();
    if (sendLags) sendLags[i] = performance.now() - t0;
    let reply;
    try {
      reply = await nc.request(c.subject, data, { timeout: spec.timeoutMs ?? 30_000, headers: h });
    } catch {
      failed.transport = (failed.transport ?? 0) + 1;
      latencies[i] = performance.now() - t0;
      return;
    }
    latencies[i] = performance.now() - t0;
    const decoded = decodeMsgPack(reply.data);
    const body = decoded.ok ? (decoded.value as { ok?: boolean; events?: unknown[]; error?: { code?: string } }) : undefined;
    if (body?.ok === true) {
      ok++;
      events += body.events?.length ?? 0;
    } else {
      const code = body?.error?.code ?? "undecodable";
      failed[code] = (failed[code] ?? 0) + 1;
    }
  };
  const run = spec.rate ? await paced(spec, spec.rate, send) : await runWindowed(spec.count, spec.inflight, send, spec.deadline);
  const seconds = run.ms / 1000;
  return {
    sent: run.done,
    ok,
    failed,
    events,
    seconds,
    perSecond: run.done / seconds,
    latency: summarize(latencies.subarray(0, run.done)),
    over: shareOver(latencies.subarray(0, run.done), TAIL_MS),
    cutShort: run.cutShort,
    startedAt,
    split: sendLags && splitOf(latencies.subarray(0, run.done), sendLags.subarray(0, run.done)),
  };
}

// An open loop of the load's commands at `rate` (about `count` of them), in the shape of runWindowed's result.
async function paced(spec: LoadSpec, rate: number, send: (i: number, dueMs: number) => Promise<void>): Promise<{ done: number; ms: number; cutShort: boolean }> {
  const wanted = (spec.count * 1000) / rate;
  const ms = Math.min(wanted, spec.deadline - Date.now());
  // atRate sends what fell due up to its last tick before `ms`: a few fewer than `count` at most.
  const phase = await atRate(rate, ms, 0, () => undefined, spec.inflight, async (_measured, i, dueMs) => {
    await send(i, dueMs);
    return true;
  });
  return { done: phase.sent, ms: phase.seconds * 1000, cutShort: ms < wanted };
}

// The latencies split into the sender's lateness and the round trip after it.
function splitOf(latencies: Float64Array, sendLags: Float64Array): NonNullable<CommandLoadResult["split"]> {
  const roundTrips = latencies.map((l, i) => l - sendLags[i]!);
  return { sendLag: summarize(sendLags), sendLagOver: shareOver(sendLags, TAIL_MS), roundTrip: summarize(roundTrips), roundTripOver: shareOver(roundTrips, TAIL_MS) };
}

/**
 * The open loops' latencies split, a row pair per load: from due to sent and from sent to reply. A tail in
 * the round trip that the service's reply stage does not have (stage-breakdown.ts's tails) lies on the way
 * in or out: NATS, or a thread of the path waiting for a core or for its event loop.
 */
export function splitTable(rows: [string, CommandLoadResult][]): string {
  const pct = (x: number | undefined) => ((x ?? 0) * 100).toFixed(2);
  const line = (name: string, l: LatencySummary, over: Record<number, number>) => [name, l.p50, l.p99, l.p999, l.max, ...TAIL_MS.map((b) => pct(over[b]))];
  return table(
    "The open loops' latencies split: from due to sent (the sender late, its 2 ms tick included) and from sent to reply (ms, and % of commands over each bound)",
    ["load", "p50", "p99", "p99.9", "max", ...TAIL_MS.map((b) => `over ${b} ms %`)],
    rows.flatMap(([name, r]) => (r.split ? [line(`${name}: late sending`, r.split.sendLag, r.split.sendLagOver), line(`${name}: round trip`, r.split.roundTrip, r.split.roundTripOver)] : [])),
  );
}

/** The number of failed commands of a load. */
export function failures(r: CommandLoadResult): number {
  return Object.values(r.failed).reduce((a, b) => a + b, 0);
}
