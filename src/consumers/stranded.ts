/**
 * When a consumer taken over from another instance may be pulled: not before every delivery the former
 * holder left unacknowledged ("stranded") is due again. JetStream redelivers a delivery once its ack_wait
 * has run out, before any newer message, but only to a pull: pulling earlier could apply an aggregate's
 * later events before the earlier ones still out with the former holder.
 *
 * What a durable's info tells: the deliveries out (`num_ack_pending`), the pull requests waiting
 * (`num_waiting`: a reader still there, which could still be handed messages), and when the last delivery
 * was made (`delivered.last_active`, by the server's clock). Every delivery out was made then or before,
 * so all of them are due by that moment plus ack_wait — read by the server's clock, never this host's
 * (see {@link serverClock}). Nothing out and nobody waiting: nothing can be stranded, pull at once.
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
