/**
 * When a consumer taken over from another instance may be pulled: not before every delivery the former
 * holder left unacknowledged ("stranded") is back with JetStream, which then redelivers it before any
 * newer message — pulling earlier could apply an aggregate's later events before the earlier ones still
 * out with the former holder.
 *
 * What a durable's info tells: the deliveries out (`num_ack_pending`), the pull requests waiting
 * (`num_waiting`: a reader still there, which could still be handed messages), its ack floor and last
 * delivery, and when that delivery was made (`delivered.last_active`, by the server's clock). Nothing out
 * and nobody waiting: nothing can be stranded, pull at once. Deliveries out and nobody waiting: they are
 * handed back ({@link nakSubjects}); failing that, every one of them is due by the last delivery's moment
 * plus ack_wait — read by the server's clock, never this host's ({@link serverClock}, {@link clearIn}).
 */
import { AckPolicy, DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { nanos, nuid } from "@nats-io/nats-core";

/** What one durable has out, as its info said. */
export interface DurableOut {
  /** Deliveries not acknowledged. */
  ackPending: number;
  /** Pull requests waiting at the server (a reader that could still be handed messages). */
  waiting: number;
  /** When the last delivery was made, by the server's clock (ms since the epoch); absent: never. */
  lastDelivered?: number;
  /** The durable's ack_wait (ms). */
  ackWaitMs: number;
  /** The stream sequence up to which everything is acknowledged (the ack floor). */
  floor?: number;
  /** The stream and delivery sequences of the last delivery. */
  delivered?: { stream: number; consumer: number };
}

/** Most stream sequences above a durable's ack floor that {@link nakSubjects} names one by one; past it, the deliveries are waited for. */
export const MAX_RETURNED = 4096;

/**
 * The ack subjects that hand every delivery above the durable's floor back to JetStream at once (a NAK),
 * in stream order; undefined when there is nothing to hand back, or too much to name one by one.
 *
 * A NAK needs no subject of the delivery itself: nats-server reads the stream sequence from the subject's
 * sixth token and acts when a delivery of it is out (`pending`), and it takes any delivery sequence above
 * the floor's and not past the next one it will give (`processNak`, the same from 2.9.10 to 2.12).
 * Sequences between them that this durable does not read, or that are out with nobody, are ignored. The
 * server answers a NAK sent as a request once it has put the delivery back: the last one is sent so, and
 * all before it are in by then.
 */
export function nakSubjects(stream: string, durable: string, d: DurableOut, max = MAX_RETURNED): string[] | undefined {
  if (d.ackPending === 0 || d.floor === undefined || !d.delivered) return undefined;
  const from = d.floor + 1;
  const to = d.delivered.stream;
  if (to < from || to - from + 1 > max) return undefined;
  const subjects: string[] = [];
  // The delivery sequence the server will give next: above its floor's whatever was acknowledged last (the
  // last delivery's own, when that was a redelivery acknowledged by floor, is not: review), and never past it.
  const dseq = d.delivered.consumer + 1;
  for (let seq = from; seq <= to; seq++) subjects.push(nakSubject(stream, durable, seq, dseq));
  return subjects;
}

/** The ack subject a NAK of stream sequence `seq` of the durable is sent to, with delivery sequence `dseq` (see {@link nakSubjects}). */
export function nakSubject(stream: string, durable: string, seq: number, dseq: number): string {
  return `$JS.ACK.${stream}.${durable}.1.${seq}.${dseq}.0.0`;
}

/**
 * Beyond ack_wait, how long after the last delivery a stranded one is taken as due again: room for the
 * server's redelivery timer, which a starved CPU delays (a Go timer), and for a cluster's servers' clocks,
 * which differ (the consumer's leader stamps deliveries, the meta leader stamps {@link serverClock}'s
 * reading; they must agree well within this: NTP, RUNBOOK). A guess, not a measured figure: no late
 * redelivery was seen in the chaos runs of stop 49 (the "deliveries of an earlier reader are outstanding"
 * a reader logs as it opens is its floor's caution before the redeliveries reach it, not one). It costs
 * a take with deliveries out 3 s of a ~30 s wait.
 */
export const DUE_MARGIN_MS = 3000;

/**
 * How long (ms) until the durables may be pulled, 0: now. Undefined: not known from these — a reader
 * still waits at the server, or deliveries are out and no server time was read — so look again later.
 * `serverNow`: the server's time now (ms since the epoch), a lower bound.
 */
export function clearIn(out: readonly DurableOut[], serverNow: number | undefined, marginMs = DUE_MARGIN_MS): number | undefined {
  let longest = 0;
  for (const d of out) {
    if (d.waiting > 0) return undefined;
    if (d.ackPending === 0) continue;
    if (d.lastDelivered === undefined || serverNow === undefined) return undefined;
    longest = Math.max(longest, d.lastDelivered + d.ackWaitMs + marginMs - serverNow);
  }
  return Math.max(0, Math.ceil(longest));
}

/** A time of the server's info (an RFC 3339 string, nanoseconds and all) in ms since the epoch; undefined if none or unreadable. */
export function serverTime(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/**
 * The server's clock, read once: creates a consumer on `stream` (ephemeral, in memory, reading nothing)
 * and takes its creation time, then deletes it. Returns the server's time at a later moment of
 * `performance.now()` — a lower bound: the creation happened before its answer came, so the server's
 * time runs ahead of it by at most the round trip. No clock of this host is compared with the server's.
 */
export async function serverClock(jsm: JetStreamManager, stream: string): Promise<(at?: number) => number> {
  const info = await jsm.consumers.add(stream, {
    // Named so that a listing tells what it is (it never reads).
    name: `nerve_clock_${nuid.next()}`,
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.New,
    inactive_threshold: nanos(10_000),
    mem_storage: true,
    num_replicas: 1,
  });
  const answered = performance.now();
  // Deleted or not, it goes by itself once inactive for 10 s: a failed delete is no concern.
  jsm.consumers.delete(stream, info.name).catch(() => undefined);
  const created = serverTime(info.created);
  if (created === undefined) throw new Error(`consumer info of ${stream} gave no creation time (${String(info.created)})`);
  return (at = performance.now()) => created + (at - answered);
}
