/** Load for the gateway bench: access grants, UpdateProgress at a fixed rate, and raw event floods. */
import { DeliverPolicy, jetstream, type ConsumerMessages } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack, deriveAccessId, encodeMsgPack } from "../contracts/index.js";
import { accessEventMessage, type AccessEventMessage } from "../test/support/access-events.js";
import type { LatencyBook } from "./gateway-clients.js";
import { atRate, type RatePhase } from "./window.js";

export type { RatePhase };

/** The bench's learners: ids, their one course, their access ids and current progress. */
export class Learners {
  readonly ids: string[];
  readonly accessIds: string[];
  readonly progress: Uint8Array;
  #version = 1_000_000;

  constructor(readonly count: number) {
    this.ids = Array.from({ length: count }, (_, i) => `learner-${i}`);
    this.accessIds = this.ids.map((id) => deriveAccessId(id, "course-1"));
    this.progress = new Uint8Array(count);
  }

  /** A version for a fabricated event: above anything the command path wrote, and increasing. */
  nextVersion(): number {
    return this.#version++;
  }
}

const msgpackHeaders = () => {
  const h = natsHeaders();
  h.set("Content-Type", "application/msgpack");
  return h;
};

/** Grants every learner access through the command path, `window` at a time. */
export async function grantAll(nc: NatsConnection, learners: Learners, window = 256): Promise<number> {
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < learners.count) {
      const i = next++;
      const body = { user_id: learners.ids[i], course_id: "course-1", expires_at: null };
      const msg = await nc.request(`cmd.access.GrantCourseAccess.${learners.accessIds[i]}`, encodeMsgPack(body), { timeout: 30_000, headers: msgpackHeaders() });
      const r = decodeMsgPack(msg.data);
      if (!r.ok || !(r.value as { ok: boolean }).ok) throw new Error(`grant failed: ${JSON.stringify(r.ok ? r.value : r.error.message)}`);
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return (performance.now() - started) / 1000;
}

/**
 * Sends UpdateProgress at `rate` per second for `ms` (open loop, round robin over learners), at most
 * `maxInflight` outstanding. Replies of commands sent after `warmupMs` go into the latency book.
 */
export function progressAtRate(nc: NatsConnection, learners: Learners, book: LatencyBook, rate: number, ms: number, warmupMs: number, onWarm: () => void = () => undefined, maxInflight = 4096): Promise<RatePhase> {
  let cursor = 0;
  return atRate(rate, ms, warmupMs, onWarm, maxInflight, async (measured) => {
    let i = cursor++ % learners.count;
    for (let tries = 0; learners.progress[i]! >= 99 && tries < learners.count; tries++) i = cursor++ % learners.count;
    const p = ++learners.progress[i]!;
    const msg = await nc.request(`cmd.access.UpdateProgress.${learners.accessIds[i]}`, encodeMsgPack({ progress: p }), { timeout: 30_000, headers: msgpackHeaders() });
    const at = performance.now();
    const r = decodeMsgPack(msg.data);
    if (!(r.ok && (r.value as { ok: boolean }).ok)) return false;
    if (measured) book.reply(`${i}:${p}`, at);
    return true;
  });
}

function progressEvent(learners: Learners, i: number, progress: number, version: number): AccessEventMessage {
  return accessEventMessage("ProgressUpdated", { access_id: learners.accessIds[i]!, user_id: learners.ids[i]!, course_id: "course-1" }, version, { progress });
}

/**
 * Publishes ProgressUpdated events straight to JetStream (as the outbox relay would) at `rate` per
 * second for `ms`, round robin over learners; each publish ack after `warmupMs` goes into the book.
 * This isolates the delivery server from the command path's own limits.
 */
export function eventsAtRate(nc: NatsConnection, learners: Learners, book: LatencyBook, rate: number, ms: number, warmupMs: number, onWarm: () => void = () => undefined): Promise<RatePhase> {
  const js = jetstream(nc);
  let next = 0;
  return atRate(rate, ms, warmupMs, onWarm, Number.POSITIVE_INFINITY, async (measured) => {
    const i = next++ % learners.count;
    const p = ++learners.progress[i]!;
    const e = progressEvent(learners, i, p, learners.nextVersion());
    await js.publish(e.subject, e.data, { headers: e.headers });
    if (measured) book.reply(`${i}:${p}`, performance.now());
    return true;
  });
}

/** Builds `count` flood events up front, so that publishing them costs the bench almost nothing. */
export function floodBatch(learners: Learners, count: number, first = 0): AccessEventMessage[] {
  return Array.from({ length: count }, (_, k) => progressEvent(learners, (first + k) % learners.count, (first + k) % 100, learners.nextVersion()));
}

/**
 * Floods EVENTS_ACCESS with prepared events for at most `ms` using core publishes (JetStream stores
 * them; no per-message ack wait), flushing every `batch`.
 */
export async function floodEvents(nc: NatsConnection, events: AccessEventMessage[], ms: number, batch = 1000): Promise<{ published: number; seconds: number }> {
  const started = performance.now();
  let published = 0;
  while (published < events.length && performance.now() - started < ms) {
    for (const end = Math.min(events.length, published + batch); published < end; published++) {
      const e = events[published]!;
      nc.publish(e.subject, e.data, { headers: e.headers });
    }
    await nc.flush();
  }
  return { published, seconds: (performance.now() - started) / 1000 };
}

/**
 * When JetStream stored each ProgressUpdated event (wall clock, ms), read with an ordered consumer
 * of the bench's own: with it, a frame's latency can be split into the command path's share (reply
 * to stored: the outbox relay) and the delivery server's (stored to frame received).
 */
export async function watchStoreTimes(nc: NatsConnection, learners: Learners, book: LatencyBook): Promise<ConsumerMessages> {
  const index = new Map(learners.accessIds.map((id, i) => [id, i]));
  const consumer = await jetstream(nc).consumers.get("EVENTS_ACCESS", { deliver_policy: DeliverPolicy.New });
  return consumer.consume({
    callback: (m) => {
      if (m.headers?.get("Event-Type") !== "ProgressUpdated") return;
      const d = decodeMsgPack(m.data);
      if (!d.ok) return;
      const e = d.value as { aggregate_id: string; payload: { progress: number } };
      const i = index.get(e.aggregate_id);
      if (i !== undefined) book.reply(`${i}:${e.payload.progress}`, m.info.timestampNanos / 1e6);
    },
  });
}
