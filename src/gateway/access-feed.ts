/**
 * Reads EVENTS_ACCESS — never the command path — with an ordered consumer: an ephemeral, in-memory
 * consumer without acks that the client recreates from the last sequence it saw after any gap or
 * server restart, so every gateway instance sees the same events in stream order and keeps no state
 * on the server. On start it replays the last `replayMs` of the stream to warm the event log.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type Consumer, type ConsumerMessages, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { EnvelopeBase, EventSchemas, EventVersions, Streams, decodeMsgPack, eventTypeOfSubject, upcasters } from "../../contracts/index.js";
import type { z } from "zod";
import type { Logger } from "../log/index.js";
import { newerOf } from "../projections/typed-event.js";
import { encodeCursor } from "./cursor.js";
import { LEARNER_EVENT_TYPES, type EntryFields, type EventLog, type LearnerEventType, type LogEntry } from "./event-log.js";
import type { GatewayMetrics } from "./metrics.js";
import { SpanKind, activeTracer, endSpan, startSpan, traceHeadersOf } from "../tracing/index.js";

/** The stream the gateway reads. */
export const ACCESS_STREAM = Streams.EVENTS_ACCESS.name;

const learnerTypes = new Set<string>(LEARNER_EVENT_TYPES);

/** What the feed needs. */
export interface AccessFeedDeps {
  nc: NatsConnection;
  log: EventLog<unknown>;
  logger: Logger;
  metrics: GatewayMetrics;
  /** How far back the start-up replay reaches (ms). */
  replayMs: number;
  /** Called for every learner event, after it is in the log; returns whether a socket of the learner took it. */
  onEntry(entry: LogEntry): boolean;
}

/** The running reader of EVENTS_ACCESS. */
export class AccessFeed {
  #messages: ConsumerMessages | undefined;
  #consumer: Consumer | undefined;
  #startSeq = 0;
  /** Bumped by every consumer opened: a callback or status of a replaced one is ignored. */
  #generation = 0;
  #replacing = false;
  #stopped = false;
  /** Bumped by every stop: a replacement begun before it gives up. */
  #run = 0;
  #warmAt = 0;
  #warm: () => void = () => undefined;
  /** The start-up replay is done: what is read now is live. */
  #live = false;
  readonly #deps: AccessFeedDeps;

  constructor(deps: AccessFeedDeps) {
    this.#deps = deps;
  }

  /**
   * Starts reading; resolves once the replay has caught up with the stream's end as of the start, or
   * as soon as `signal` aborts (then {@link stop} closes what was opened).
   */
  async start(signal?: AbortSignal): Promise<void> {
    const { nc, log } = this.#deps;
    this.#stopped = false;
    const jsm = await jetstreamManager(nc);
    const { startSeq, lastSeq } = await replayStart(jsm, Date.now() - this.#deps.replayMs);
    if (signal?.aborted) return;
    log.floor = startSeq;
    log.head = startSeq - 1;
    this.#startSeq = startSeq;
    this.#warmAt = lastSeq;
    const warm = new Promise<void>(
      (resolve) =>
        (this.#warm = () => {
          this.#live = true;
          resolve();
        }),
    );
    if (lastSeq < startSeq) this.#warm();
    await this.#open(startSeq);
    if (signal?.aborted) return;
    signal?.addEventListener("abort", () => this.#warm(), { once: true });
    await warm;
    if (signal?.aborted) return;
    this.#deps.logger.info({ from: startSeq, to: log.head, buffered: log.size }, "access feed warm");
  }

  /**
   * How far the start-up replay has got: stream sequences read of those it reads before it is warm
   * (0 of 0 until it knows its range).
   */
  replayProgress(): { read: number; of: number } {
    if (this.#startSeq === 0) return { read: 0, of: 0 }; // stream sequences start at 1
    const of = Math.max(0, this.#warmAt - this.#startSeq + 1);
    return { read: Math.min(of, Math.max(0, this.#deps.log.head - this.#startSeq + 1)), of };
  }

  /**
   * Stops reading, and deletes its ordered consumer on EVENTS_ACCESS rather than leaving it to the server's
   * inactivity threshold (5 minutes: a crash loop or a rolling deploy piled them up on the stream). At most
   * a second for the delete: with NATS away the server drops it by itself later.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#run++;
    this.#generation++;
    const messages = this.#messages;
    const consumer = this.#consumer;
    this.#messages = undefined;
    this.#consumer = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([discard(messages, consumer), new Promise((r) => (timer = setTimeout(r, 1000)))]).finally(() => clearTimeout(timer));
  }

  /**
   * Opens an ordered consumer from stream sequence `from`. Short pulls: a pull that expires every few
   * seconds (its idle heartbeat half that) bounds how long a lost pull goes unnoticed.
   */
  async #open(from: number): Promise<void> {
    const generation = ++this.#generation;
    const consumer = await jetstream(this.#deps.nc).consumers.get(ACCESS_STREAM, { opt_start_seq: from });
    if (generation !== this.#generation) return void discard(undefined, consumer);
    this.#consumer = consumer;
    const messages = await consumer.consume({ max_messages: 1024, expires: 5000, callback: (m) => void (generation === this.#generation && this.#handle(m)) });
    if (generation !== this.#generation) return void discard(messages, consumer);
    this.#messages = messages;
    void (async () => {
      for await (const s of messages.status()) {
        if (s.type === "ordered_consumer_recreated" || s.type === "stream_not_found" || s.type === "heartbeats_missed") this.#deps.logger.warn({ status: s.type }, "access feed");
        // nats.js recovers from these itself, but slowly: after missed heartbeats it asks for the consumer's info,
        // and while the node holding that R1 consumer is down the request fails and is retried every 2.5–7.5 s
        // until the node is back (consumer.js resetPendingWithInfo); then the restarted node's empty consumer
        // delivers from its start again and is recreated (reset), whose first pull asks for the batch less the
        // old pulls still counted as pending, so little or nothing comes until two more heartbeats are missed.
        // Learners saw no push for 15–25 s after a node's kill. A fresh consumer from the next sequence, on a
        // node that is up, instead: the log drops what it already holds, so no gap and no duplicate.
        if ((s.type === "heartbeats_missed" || s.type === "ordered_consumer_recreated") && generation === this.#generation) this.#replace();
      }
    })().catch(() => undefined);
  }

  /** Drops the current consumer and opens another from the sequence after the log's head, retrying until one is made or the feed stops. */
  #replace(): void {
    if (this.#replacing || this.#stopped) return;
    this.#replacing = true;
    const messages = this.#messages;
    const consumer = this.#consumer;
    this.#generation++; // the old one's messages are ignored from now
    void discard(messages, consumer);
    const run = this.#run;
    void (async () => {
      // Until one is made, or the feed stops (every stop starts a new run).
      for (let attempt = 0; run === this.#run; attempt++) {
        try {
          await this.#open(this.#deps.log.head + 1);
          if (run !== this.#run) return;
          this.#deps.logger.warn({ from: this.#deps.log.head + 1, attempt }, "access feed: consumer replaced");
          return;
        } catch (err) {
          // No stream leader yet (an election), or no answer: again shortly.
          if (attempt % 10 === 0) this.#deps.logger.warn({ err, attempt }, "access feed: consumer not replaced yet");
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    })().finally(() => (this.#replacing = false));
  }

  #handle(m: JsMsg): void {
    const { log, metrics } = this.#deps;
    const seq = m.seq;
    if (seq <= log.head) return;
    try {
      metrics.countEvent(this.#process(m));
    } catch (err) {
      metrics.countEvent("error");
      this.#deps.logger.error({ err, seq }, "access event not processed");
    }
    log.head = seq;
    metrics.feed.head = seq;
    metrics.feed.buffered = log.size;
    if (seq >= this.#warmAt || m.info.pending === 0) this.#warm(); // pending 0: the last one may have been deleted
  }

  #process(m: JsMsg): string {
    // The subject names the type (as the consumers read it): the Event-Type header only where the subject is
    // not an event subject, since reading it decodes the message's whole header block.
    const type = eventTypeOfSubject(m.subject) ?? m.headers?.get("Event-Type") ?? "";
    if (!learnerTypes.has(type)) return "ignored";
    const decoded = decodeMsgPack(m.data);
    if (!decoded.ok) return this.#invalid(m, "undecodable envelope");
    let envelope = decoded.value as { event_version?: unknown };
    // Older versions are upgraded first (the envelope is checked before an upcaster touches it).
    if (typeof envelope?.event_version === "number" && envelope.event_version < EventVersions[type as LearnerEventType]) {
      const base = EnvelopeBase.safeParse(envelope);
      if (!base.success) return this.#invalid(m, base.error.issues[0]?.message ?? "invalid envelope");
      envelope = upcasters.upcast(base.data);
    }
    let event: z.infer<(typeof EventSchemas)[LearnerEventType]>;
    if (typeof envelope?.event_version === "number" && envelope.event_version > EventVersions[type as LearnerEventType]) {
      // A newer version than this build knows (a rolling upgrade): checked for the fields known here, and
      // pushed as it was written — versions only add fields (CONTRACT.md §2).
      const base = EnvelopeBase.safeParse(envelope);
      if (!base.success) return this.#invalid(m, base.error.issues[0]?.message ?? "invalid envelope");
      const known = newerOf(type as LearnerEventType).safeParse(base.data);
      if (!known.success) return this.#invalid(m, known.error.issues[0]?.message ?? "schema violation");
      event = base.data as unknown as typeof event;
    } else {
      const parsed = EventSchemas[type as LearnerEventType].safeParse(envelope);
      if (!parsed.success) return this.#invalid(m, parsed.error.issues[0]?.message ?? "schema violation");
      event = parsed.data;
    }
    if (this.#deps.log.isRepeat(event.payload.user_id, event.aggregate_id, event.aggregate_version)) return "repeat";
    // The push joins the trace of the command behind the event: logged and queued for the learner's
    // sockets (written within the hub's flush window of a few milliseconds). Only a push: not for the
    // warm-up's replay of the last 24 h (events of old traces, nobody connected yet), nor for an event
    // no socket of its learner took, so it is made once that is known, from the time the push began.
    const tracer = this.#live ? activeTracer() : undefined;
    const began = tracer && performance.now();
    const entry = this.#deps.log.append(entryFieldsOf(event, m.seq, Math.floor(m.info.timestampNanos / 1e6)), eventFrame(event, m.seq), event as Parameters<EventLog["append"]>[2]);
    if (this.#deps.onEntry(entry) && tracer) endSpan(startSpan(tracer, `gateway push ${type}`, SpanKind.CONSUMER, traceHeadersOf(m.headers), { "nerve.stream_seq": m.seq }, began));
    return "delivered";
  }

  #invalid(m: JsMsg, why: string): string {
    this.#deps.logger.warn({ seq: m.seq, subject: m.subject, why }, "invalid access event skipped");
    return "invalid";
  }
}

/** What the log keeps of a validated learner event at stream sequence `seq`, stored at `at` (ms since the epoch); the log copies the ids it keeps. */
export function entryFieldsOf(event: { aggregate_id: string; aggregate_version: number; payload: { user_id: string } }, seq: number, at: number): EntryFields {
  return { seq, at, userId: event.payload.user_id, accessId: event.aggregate_id, version: event.aggregate_version };
}

/** The `event` frame of a validated learner event at stream sequence `seq` (CONTRACT.md: the WebSocket protocol). */
export function eventFrame(event: object, seq: number): string {
  return JSON.stringify({ type: "event", cursor: encodeCursor(seq), event });
}

/**
 * Closes a replaced or stopped consumer's message stream and deletes the consumer, whatever fails (on a node
 * that is down the server drops it after its inactivity threshold); settles when both have.
 */
async function discard(messages: ConsumerMessages | undefined, consumer: Consumer | undefined): Promise<void> {
  await messages?.close().catch(() => undefined);
  await Promise.resolve()
    .then(() => consumer?.delete())
    .catch(() => false);
}

/**
 * The first stream sequence stored at or after `sinceMs`, and the last one now. A short-lived
 * consumer with DeliverByStartTime lets the server find it; its `delivered.stream_seq` is the one before.
 */
export async function replayStart(jsm: JetStreamManager, sinceMs: number): Promise<{ startSeq: number; lastSeq: number }> {
  const { state } = await jsm.streams.info(ACCESS_STREAM);
  const lastSeq = state.last_seq;
  if (state.messages === 0 || Date.parse(state.last_ts) < sinceMs) return { startSeq: lastSeq + 1, lastSeq };
  if (Date.parse(state.first_ts) >= sinceMs) return { startSeq: state.first_seq, lastSeq };
  const ci = await jsm.consumers.add(ACCESS_STREAM, {
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(sinceMs).toISOString(),
    ack_policy: AckPolicy.None,
    inactive_threshold: nanos(30_000),
    mem_storage: true,
  });
  try {
    return { startSeq: Math.max(state.first_seq, ci.delivered.stream_seq + 1), lastSeq };
  } finally {
    await jsm.consumers.delete(ACCESS_STREAM, ci.name).catch(() => undefined);
  }
}
