/** Runs one subscriber's durable JetStream consumers: decode, apply idempotently, ack after commit, dead-letter poison. */
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type ConsumerInfo, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { z } from "zod";
import { Contexts, EnvelopeBase, Headers, decodeMsgPack, eventTypeOfSubject, upcasters, type Context } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { DeadLetters } from "./dead-letters.js";
import type { EventHandler } from "./event-handler.js";
import { PoisonEventError } from "./subscriber.js";
import { retryTransient } from "../nats/index.js";
import { activeTracer, traceHeadersOf, type TraceHeaders } from "../tracing/index.js";
import { isPoisonFailure, isTransientFailure } from "./transient.js";
import { AckFloor, type ConsumerPosition } from "./ack-floor.js";
import { ReaderBacklog } from "./backlog.js";
import { MAX_RETURNED, nakSubject, nakSubjects, serverTime, type DurableOut } from "./stranded.js";
import { BatchBeforeFailed, BatchLink } from "../persistence/index.js";
import { WriteWorkerStopped } from "../persistence/sqlite-write-worker.js";

import { reportFailure, sleep, supervise, watch, type Supervised } from "../supervision/index.js";

// JetStream's API error code of a durable that does not exist.
const CONSUMER_NOT_FOUND = 10014;

/** Whether `err` says the durable does not exist (JetStream's 10014), as opposed to any failure to look. */
export function isConsumerNotFound(err: unknown): boolean {
  return (err as { code?: number })?.code === CONSUMER_NOT_FOUND || /consumer not found/i.test(String((err as Error)?.message));
}

/** Retry policy of every consumer. */
export interface RetryPolicy {
  /** Failures of an event, counted in this process from its first, at which one that is not transient dead-letters it. */
  maxDeliver: number;
  /** Delay before each attempt again, by failure (the last one repeats). */
  backoffMs: number[];
  /**
   * The delivery (JetStream's count of them) from which an event's first failure that is not transient
   * parks it: {@link crashLoopDelivery} by default.
   */
  parkAtDelivery?: number;
}

/** The default retry policy: five attempts over about twenty seconds. */
export const DEFAULT_RETRY: RetryPolicy = { maxDeliver: 5, backoffMs: [200, 1000, 4000, 15000] };

/**
 * The delivery from which an event's first failure parks it, by default: four times the policy's failures.
 *
 * The runner counts an event's failures itself, from the first in this process. JetStream's count of
 * deliveries also rises for what is no failure — a crash or a lease hand-off (every outstanding delivery
 * comes again), an ack_wait that ran out during a long batch, acks held behind another reader (a
 * delivery again every ack_wait, 30 s) — and counted by deliveries, such an event was parked on its first
 * failure here, without its retries. A count kept in the process, though, starts again with every
 * process: an event whose failure takes the process down before its retries are over (the failure leads
 * to a crash, or the process is killed while it waits out a back-off) would never reach maxDeliver, and
 * would come back for good with nothing after it applied. Only the deliveries see that, so past this
 * many its first failure parks it. Four times maxDeliver (20 by default: ten minutes or more of a
 * consumer going round, a crash and an ack_wait each time) leaves room for many redeliveries that were
 * no failure; an event that ends the process without any failure being caught (it dies inside the
 * handling) is not parked by this either, as it never was: the consumer's lag and the restarts show it.
 */
export const crashLoopDelivery = (policy: RetryPolicy): number => policy.parkAtDelivery ?? 4 * policy.maxDeliver;

/** One durable consumer on one stream. */
export interface Binding {
  stream: string;
  /** The events it reads: one type (`events.<context>.<Type>.*`) or the whole stream (`events.<context>.>`). */
  filter: string;
  /**
   * The durable's `filter_subject` on the server: none when it reads the whole stream. nats-server before
   * 2.9.15 recounts a filtered consumer's pending messages on every delivery while the consumer is in the
   * first half of the stream's newest block (`filteredPendingLocked` leaves `last` unset, so `numPending`
   * never keeps its count; fixed upstream by nats-io/nats-server daacbf5): a consumer that fell behind
   * crawled at 35–60 events/s with the server at a full core, comparing every message's subject with
   * every subject of the block. An unfiltered consumer's count is arithmetic.
   */
  consumerFilter: string | undefined;
}

/** The durable consumers a subscriber needs: one per stream it reads, filtered by subject to its one event type, else unfiltered. */
export function bindingsOf(handles: Partial<Record<Context, readonly string[]>>): Binding[] {
  return (Object.entries(handles) as [Context, readonly string[]][])
    .filter(([, types]) => types.length > 0)
    .map(([context, types]) => {
      const filter = types.length === 1 ? `events.${context}.${types[0]}.*` : `events.${context}.>`;
      return { stream: Contexts[context].stream, filter, consumerFilter: types.length === 1 ? filter : undefined };
    });
}

/** Figures of one runner. */
export interface RunnerStats {
  handled: number;
  duplicates: number;
  skipped: number;
  deadLettered: number;
  /** Attempts of an event again, in place, after it failed (each after a back-off; nothing later applied meanwhile). */
  retries: number;
  /** Batches that failed outside any event's own handling (a bug, or the database gone): nak'ed for redelivery. */
  failures: number;
  /** Attempts to store a dead letter that failed (each retried). */
  deadLetterFailures: number;
  /** Batches of events this subscriber handles, applied (or attempted) as one transaction each. */
  batches: number;
  /** Floor acks sent (`AckPolicy.All`: one per batch at most). */
  acks: number;
  /** Times acks were held because a delivery went to another reader. */
  ackHolds: number;
  /**
   * Batches applied again, whole, because their first attempt at the write worker was refused (the batch
   * before them failed) or lost (the worker stopped): each once the batch before had settled.
   */
  retriedBehind: number;
  /**
   * Times what arrived was held back, not applied, until another reader's deliveries came back (FloorAcks.holding),
   * and of those the holds whose bound ran out first (applied without them).
   */
  heldBack: number;
  heldBackTimedOut: number;
}

/** JetStream's ack body. */
const ACK = "+ACK";
const NAK = "-NAK";

/** The connection under a JetStream manager (nats.js has it, its types do not say so). */
function connectionOf(jsm: JetStreamManager): NatsConnection | undefined {
  const get = (jsm as unknown as { getConnection?: () => NatsConnection }).getConnection;
  return typeof get === "function" ? get.call(jsm) : undefined;
}

/**
 * How long each pull request of a reader lasts (nats.js: idle heartbeats every half of it, a new pull after
 * two missed). A pull request lives only on the durable's leader: when that nats-server dies (R3), the
 * request dies with it, the new leader sends nothing, and only the missed heartbeats bring a new pull —
 * with nats.js's default of 30 s, 30–60 s without an event after every election
 * (test/e2e/consumer-leader-kill.e2e.test.ts). The gateway's access feed pulls the same way.
 */
const PULL_EXPIRES_MS = 5_000;

/** How long a reader that is not clean waits between looks at its durable's info. */
const RECONCILE_MS = 500;
/** How soon a reader that begins to hold what arrives first looks at its durable's info. */
const FIRST_LOOK_MS = 50;
/** After how long held acks are worth a warning (twice ack_wait), and how often it is repeated. */
const HOLD_WARN_MS = 60_000;

const positionOf = (info: ConsumerInfo): ConsumerPosition => ({
  ackFloorStream: info.ack_floor.stream_seq,
  ackFloorDelivery: info.ack_floor.consumer_seq,
  delivered: info.delivered.consumer_seq,
  ackPending: info.num_ack_pending,
});

/**
 * The floor of what this reader committed, acknowledged once per batch. Never a term: under
 * `AckPolicy.All` it would settle everything below it; a dead letter is settled by the floor.
 */
class FloorAcks {
  readonly #floor: AckFloor<JsMsg>;
  #timer: NodeJS.Timeout | undefined;
  #asking = false;
  #closed = false;
  /** Since when (performance.now()) acks are held, and when that was last said. */
  #holdingSince: number | undefined;
  #toldAt = 0;
  /** How long what arrives may wait for clean before it is applied anyway: twice the durable's ack_wait. */
  readonly #holdMaxMs: number;
  /** Readers waiting in {@link settled}. */
  #waiters: (() => void)[] = [];
  /** Stream sequences handed back (NAKed) since the reader was last clean: each once. */
  #handedBack = new Set<number>();

  constructor(
    start: ConsumerInfo,
    private readonly info: () => Promise<ConsumerInfo>,
    /** Sends an ack again (the message's own `ack()` sends once only). */
    private readonly reack: (reply: string) => void,
    /** NAKs stream sequences of the durable, with the delivery sequence the server gives next (stranded.ts). */
    private readonly handBack: (seqs: readonly number[], nextDelivery: number) => void,
    private readonly logger: Logger,
    private readonly stats: RunnerStats,
  ) {
    this.#floor = new AckFloor<JsMsg>(positionOf(start));
    this.#holdMaxMs = 2 * (start.config.ack_wait ? Math.ceil(start.config.ack_wait / 1e6) : 30_000);
    if (!this.#floor.clean) {
      this.#holdingSince = performance.now();
      this.logger.info({ ack_pending: start.num_ack_pending }, "deliveries of an earlier reader are outstanding: what arrives is applied, in stream order, once they are this reader's");
    }
  }

  /** True while every outstanding delivery of the durable is this reader's. */
  get clean(): boolean {
    return this.#floor.clean;
  }

  /**
   * Whether what arrives must wait before it is applied: the durable has deliveries out that are not this
   * reader's (an earlier reader's, or one that went elsewhere), and {@link settled}'s bound has not run out.
   * An event of theirs may come back below what arrived meanwhile — a takeover whose hand-back was lost
   * (an R3 consumer leader's change empties its redelivery queue), a frozen former holder woken to NAK or
   * pull what it held —, and applied after a later event of its aggregate it could leave a read model wrong
   * for good (the version-guarded projections take any order since a pending row waits for its creation,
   * course-rows.ts; a projection without such guards does not). Held back until every outstanding delivery
   * is this reader's, the earlier reader's events are here too, and the lot is applied in stream order.
   */
  get holding(): boolean {
    return !this.#floor.clean && this.#holdingSince !== undefined && performance.now() - this.#holdingSince < this.#holdMaxMs;
  }

  /**
   * Resolves once the reader is clean again, once the hold's bound (twice ack_wait from when it began) has
   * run out — past it, what still keeps deliveries is a reader alive beside this one, and its events are
   * applied in stream order among what has arrived, as before the hold existed —, or when the reader closes
   * or `signal` aborts. Meanwhile the server is asked (first after {@link FIRST_LOOK_MS}, then every
   * {@link RECONCILE_MS}) and the held deliveries are kept from being redelivered (`+WPI` every
   * {@link KEEP_ALIVE_MS}).
   */
  async settled(signal: AbortSignal): Promise<void> {
    const left = this.#holdMaxMs - (performance.now() - (this.#holdingSince ?? performance.now()));
    if (!this.holding || this.#closed || signal.aborted || left <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    let keepAlive: NodeJS.Timeout | undefined;
    let done: (() => void) | undefined;
    try {
      await new Promise<void>((resolve) => {
        done = () => resolve();
        this.#waiters.push(done);
        signal.addEventListener("abort", done, { once: true });
        timer = setTimeout(done, left);
        keepAlive = setInterval(() => this.keepAlive(), KEEP_ALIVE_MS);
        // The first look soon: after a take's hand-back the deliveries were back at the server before the
        // first pull, and are here with it (then every RECONCILE_MS).
        this.flush(FIRST_LOOK_MS);
      });
    } finally {
      clearTimeout(timer);
      clearInterval(keepAlive);
      if (done) signal.removeEventListener("abort", done);
      this.#waiters = this.#waiters.filter((w) => w !== done);
    }
  }

  /** A message arrived. */
  received(m: JsMsg): void {
    const wasClean = this.#floor.clean;
    const acked = m.seq <= this.#floor.acked;
    this.#floor.received(m.info.deliverySequence, m.seq, m);
    if (wasClean && !this.#floor.clean) {
      this.stats.ackHolds++;
      this.#holdingSince = performance.now();
      if (acked) this.logger.warn({ delivery_seq: m.info.deliverySequence, stream_seq: m.seq, floor: this.#floor.acked }, "a delivery this reader acknowledged came back: the ack was lost (with the connection, or a restarted server); asking the server, to send it again");
      else this.logger.warn({ delivery_seq: m.info.deliverySequence }, "a delivery of this durable went to another reader: acks, and what arrives, wait until its outstanding deliveries are this reader's");
    }
  }

  /** Settled for good: applied, a duplicate, not this reader's type, or dead-lettered. */
  done(m: JsMsg): void {
    this.#floor.done(m.seq);
  }

  /**
   * Every delivery held is still being worked on (`+WPI`, ack_wait starts again): while an event is
   * retried in place, neither it nor what came after it is redelivered meanwhile.
   */
  keepAlive(): void {
    for (const m of this.#floor.messages()) {
      try {
        m.working();
      } catch {
        // The connection is gone: the deliveries come back after ack_wait anyway.
      }
    }
  }

  /** After a batch: sends the floor the settled messages allow; while not clean, asks the server in `askInMs`. */
  flush(askInMs = RECONCILE_MS): void {
    const ack = this.#floor.next();
    if (ack) {
      try {
        ack.msg.ack();
      } catch {
        // The connection is gone: the next floor covers it, or the deliveries come back after ack_wait.
      }
      this.#floor.sent(ack);
      this.stats.acks++;
    }
    if (!this.#floor.clean && !this.#timer && !this.#asking && !this.#closed) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#ask();
      }, askInMs);
      this.#timer.unref();
    }
  }

  /** The reader stops: no more asking the server. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#wake();
  }

  // Ends every wait of settled().
  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /**
   * Hands back to JetStream (a NAK each) the deliveries out above the durable's floor that this reader does
   * not hold, so that they come to it now rather than after ack_wait: lost in flight with a connection (a
   * NATS restart or reconnect: nobody else has them), left by an earlier reader, or taken by a reader
   * beside this one (a holder that lost its lease: its commits are fenced, the NAK brings its events here).
   * Each sequence once a hold; a range of more than MAX_RETURNED sequences is waited for instead, as a take's.
   */
  #handBackMissing(info: ConsumerInfo): void {
    // Nothing out but this reader's own: none to hand back.
    if (info.num_ack_pending <= this.#floor.held) return;
    // Never at or under a floor this reader sent: the info may predate it (a floor sent again just now), and
    // nats-server 2.9.10 takes a NAK of an acknowledged sequence while nothing else is out (`processNak`
    // looks the sequence up only in a non-empty pending set), then delivers it again for good, below its floor.
    const from = Math.max(info.ack_floor.stream_seq, this.#floor.sentFloor) + 1;
    const to = info.delivered.stream_seq;
    if (to < from || to - from + 1 > MAX_RETURNED) return;
    const seqs: number[] = [];
    for (let seq = from; seq <= to; seq++) if (!this.#floor.holds(seq) && !this.#handedBack.has(seq)) seqs.push(seq);
    if (seqs.length === 0) return;
    for (const seq of seqs) this.#handedBack.add(seq);
    this.handBack(seqs, info.delivered.consumer_seq + 1);
    this.logger.info({ handed_back: seqs.length, from: seqs[0], to: seqs.at(-1) }, "handed deliveries this reader lacks back to JetStream, to have them in order");
  }

  // Reads the durable's info and, should the outstanding deliveries be exactly this reader's, acks again.
  #ask(): void {
    this.#asking = true;
    this.info()
      .then((info) => {
        if (this.#closed) return;
        const position = positionOf(info);
        const again = this.#floor.forgotten(position);
        if (again) {
          this.reack((again.msg as unknown as { reply: string }).reply);
          this.logger.warn({ ack_floor: info.ack_floor.stream_seq, sent: again.streamSeq }, "the server's ack floor is below the one this reader sent (the ack was lost with the connection, or nats-server restarted from an older state): sent again");
        }
        const held = this.#floor.held;
        if (this.#floor.reconcile(position)) {
          this.#holdingSince = undefined;
          this.#handedBack.clear();
          this.logger.info({ held }, "every outstanding delivery of the durable is this reader's: acks resume");
          this.#wake();
          return;
        }
        this.#handBackMissing(info);
        // Past ack_wait, every delivery of an earlier reader is back: what still holds is a reader alive beside this one.
        const s = ((performance.now() - (this.#holdingSince ?? performance.now())) / 1000) | 0;
        if (s * 1000 > HOLD_WARN_MS && performance.now() - this.#toldAt > HOLD_WARN_MS) {
          this.#toldAt = performance.now();
          this.logger.warn({ seconds: s, held, ack_pending: info.num_ack_pending }, "acks held: another reader keeps deliveries of this durable");
        }
      })
      .catch((err: unknown) => this.logger.warn({ err: String(err) }, "could not read the durable's info; will ask again"))
      .finally(() => {
        this.#asking = false;
        this.flush();
      });
  }
}

/** One open subscription to a durable, and how its messages are acknowledged. */
interface Reader {
  messages: ConsumerMessages;
  acks: FloorAcks;
  /** The consumer's undelivered events when it opened. */
  pending: number;
}

/**
 * The contract's envelope as the runner checks each delivery: EnvelopeBase with the payload checked as a
 * plain object instead of through `z.record`, which rebuilds it key by key (0.6 µs of ~1.6 per envelope in a
 * loop) — the handler's typedEvent then parses the payload against its type's schema. A freshly decoded
 * message owns its objects, so nothing else sees the payload the upcasters may change.
 */
const DeliveredEnvelope = EnvelopeBase.extend({
  payload: z.custom<Record<string, unknown>>((v) => typeof v === "object" && v !== null && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null), { message: "expected an object" }),
});

/**
 * An envelope that parsed, but whose upcasting threw (a bug in an upcaster): parked with the envelope as
 * received, not yet upcast, which a retry (DeadLetters.retry) upcasts again — with the fixed code.
 */
class NotUpcast extends PoisonEventError {
  constructor(
    message: string,
    /** The envelope as received (undefined should it not decode a second time). */
    readonly received: EnvelopeBase | undefined,
  ) {
    super(message);
  }
}

/** A batch decoded and ready to apply. */
interface Prepared {
  b: Binding;
  acks: FloorAcks;
  decoded: { m: JsMsg; e: EnvelopeBase }[];
  traces: (TraceHeaders | undefined)[] | undefined;
  gate: Gate;
  signal: AbortSignal;
}

/**
 * One reader's: halted once the runner stopped while an event of it was failing. Nothing after that
 * event may be applied then (it would overtake it): the reader leaves the rest unacknowledged.
 */
interface Gate {
  halted: boolean;
}

/** Whether a buffer of deliveries is in strictly ascending stream sequence (the usual case: one look at each). */
function ascending(buffer: readonly JsMsg[]): boolean {
  for (let i = 1; i < buffer.length; i++) if (buffer[i]!.seq <= buffer[i - 1]!.seq) return false;
  return true;
}

/** Puts a buffer of deliveries in ascending stream sequence, keeping the latest delivery of each (an earlier one is a redelivery's). */
function inStreamOrder(buffer: JsMsg[]): void {
  const latest = new Map<number, JsMsg>();
  for (const m of buffer) latest.set(m.seq, m);
  const sorted = [...latest.values()].sort((a, b) => a.seq - b.seq);
  buffer.length = 0;
  for (const m of sorted) buffer.push(m);
}

/** How often a reader retrying an event in place tells the server it still works on what it holds: well inside ack_wait. */
const KEEP_ALIVE_MS = 10_000;

/** Longest wait between attempts to store a dead letter; below `ack_wait`, so the message stays in hand. */
const DEAD_LETTER_MAX_BACKOFF_MS = 15_000;

/** What a runner tells of its readers' backlogs (the writer's admission, backlog.ts). */
export interface BacklogWatch {
  /** Events behind past which a reader that caught up once holds commands back. */
  limit: number;
  /** Told after each finished batch. */
  changed: () => void;
}

/** Consumes a subscriber's bindings until stopped. */
export class ConsumerRunner {
  readonly stats: RunnerStats = { handled: 0, duplicates: 0, skipped: 0, deadLettered: 0, retries: 0, failures: 0, deadLetterFailures: 0, batches: 0, acks: 0, ackHolds: 0, retriedBehind: 0, heldBack: 0, heldBackTimedOut: 0 };
  readonly bindings: Binding[];
  /** The run from start() to stop(): aborted by stop(), its supervised readers, its start. */
  #run: { ctl: AbortController; tasks: Supervised[]; starting: Promise<void> } | undefined;
  /** The last stop: done once every reader of the runs before it has finished. */
  #stopped: Promise<void> = Promise.resolve();
  /** The backlog of each open reader, when watched. */
  readonly backlogs = new Set<ReaderBacklog>();

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly handler: EventHandler,
    private readonly deadLetters: DeadLetters,
    private readonly logger: Logger,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
    private readonly backlogWatch?: BacklogWatch,
  ) {
    this.bindings = bindingsOf(handler.subscriber.handles);
  }

  /** The durable name. */
  get name(): string {
    return this.handler.subscriber.name;
  }

  /**
   * Creates the durable consumers when absent (from the first event of the stream). Only "consumer not
   * found" means absent: a stream leader's election (transient) is waited out, never taken for it — until
   * `signal` aborts (the runner stops), which ends the waiting with the last failure.
   */
  async ensure(signal?: AbortSignal): Promise<void> {
    await retryTransient(`consumer ${this.name}`, () => this.#ensure(), { logger: this.logger, signal });
  }

  async #ensure(): Promise<void> {
    for (const b of this.bindings) {
      const existing = await this.#infoIfAny(b.stream);
      if (!existing) {
        await this.jsm.consumers.add(b.stream, this.#config(b, { deliver_policy: DeliverPolicy.All }));
        continue;
      }
      const has = existing.config.filter_subject || undefined;
      // An earlier release named the whole stream as the filter: the same events (but the server's slow count applies to it).
      const wholeStreamByName = b.consumerFilter === undefined && has === b.filter;
      if (has !== b.consumerFilter && !wholeStreamByName) {
        throw new Error(`consumer ${this.name} on ${b.stream} filters ${has ?? "nothing"}, expected ${b.consumerFilter ?? "nothing"}`);
      }
      if (existing.config.ack_policy === AckPolicy.All && !wholeStreamByName && !((existing.config.max_deliver ?? -1) > 0)) continue;
      await this.#recreate(b, existing);
    }
  }

  /**
   * A replay's durables, while the runner is stopped: each binding's is deleted (one already gone is
   * fine; a transient failure is retried, any other thrown) and made anew from the stream's first event.
   * A durable found already delivered past its start was never gone (made again meanwhile, or a deletion
   * that failed unseen): that throws, so a replay can never finish on the old durable's ack floor.
   */
  async replaceDurables(): Promise<void> {
    if (this.#run) throw new Error(`consumer ${this.name} runs: stop it before replacing its durables`);
    for (const b of this.bindings) {
      const what = `consumer ${this.name} on ${b.stream}`;
      await retryTransient(
        `deleting ${what}`,
        async () => {
          const deleted = await this.jsm.consumers.delete(b.stream, this.name).catch((err: unknown) => {
            if (isConsumerNotFound(err)) return true;
            throw err;
          });
          if (!deleted) throw new Error(`${what}: JetStream did not delete it`);
        },
        { logger: this.logger },
      );
      // Safe to send again after a timeout: the same configuration finds the durable made by the first.
      const made = await retryTransient(what, () => this.jsm.consumers.add(b.stream, this.#config(b, { deliver_policy: DeliverPolicy.All })), { logger: this.logger });
      if (made.delivered.consumer_seq > 0 || made.num_ack_pending > 0) {
        throw new Error(`${what} is not new: it has delivered ${made.delivered.consumer_seq} messages (deleted and made again by someone else meanwhile?)`);
      }
    }
  }

  // The durable of one binding, as this release makes it: acked by floor, no max_deliver (the runner
  // dead-letters after its own count; see AckFloor for why the server must never drop a delivery).
  #config(b: Binding, from: Pick<ConsumerConfig, "deliver_policy" | "opt_start_seq">): Partial<ConsumerConfig> {
    return {
      durable_name: this.name,
      ack_policy: AckPolicy.All,
      ...from,
      ...(b.consumerFilter ? { filter_subject: b.consumerFilter } : {}),
      ack_wait: nanos(30_000),
      max_ack_pending: 1000,
    };
  }

  /**
   * Recreates a durable of an earlier release (an ack per event, a `max_deliver`, the whole stream named
   * as its filter) from its ack floor: deliveries outstanding at that moment are delivered again and
   * found duplicates by the read model's idempotency, nothing below the floor is read twice. Called only
   * where this runner is the durable's one reader (it holds the consumer's lease, or there are none).
   */
  async #recreate(b: Binding, old: ConsumerInfo): Promise<void> {
    const floor = old.ack_floor.stream_seq;
    await this.jsm.consumers.delete(b.stream, this.name);
    await this.jsm.consumers.add(b.stream, this.#config(b, floor > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 } : { deliver_policy: DeliverPolicy.All }));
    this.logger.info(
      { consumer: this.name, stream: b.stream, ack_floor: floor, ack_pending: old.num_ack_pending, was: { ack_policy: old.config.ack_policy, filter: old.config.filter_subject ?? null, max_deliver: old.config.max_deliver ?? null } },
      "durable of an earlier release recreated from its ack floor, acknowledged by floor",
    );
  }

  /**
   * Starts consuming every binding; a no-op while it runs, and joins a start in progress: a second reader
   * of a durable in this process would take deliveries the first one's floor waits for (FloorAcks holds
   * its acks for good). Each binding's loop is supervised: should it fail or end while the runner runs (a
   * consumer deleted behind Nerve's back, a bug), it is logged, counted and started again. A start that
   * fails leaves nothing running; one that a stop overtakes closes what it opened and resolves.
   */
  start(): Promise<void> {
    if (this.#run) return this.#run.starting;
    const ctl = new AbortController();
    const tasks: Supervised[] = [];
    // The previous run's readers finish their batch in progress first: nothing later is applied before it.
    const behind = this.#stopped;
    const starting = this.#start(ctl.signal, tasks, behind).catch(async (err: unknown) => {
      // Overtaken by stop(): the failure is the stop's doing (an ensure() it cut short), not worth a report.
      const overtaken = this.#run?.ctl !== ctl;
      if (!overtaken) this.#run = undefined;
      ctl.abort();
      await Promise.all(tasks.map((t) => t.stop()));
      if (!overtaken) throw err;
    });
    this.#run = { ctl, tasks, starting };
    return starting;
  }

  async #start(signal: AbortSignal, tasks: Supervised[], behind: Promise<void>): Promise<void> {
    await behind;
    if (signal.aborted) return;
    await this.ensure(signal);
    for (const b of this.bindings) {
      if (signal.aborted) return;
      // The first subscription is made here, so a start that cannot consume fails loudly.
      let first: Reader | undefined = await this.#open(b);
      if (signal.aborted) return this.#close(first);
      tasks.push(
        supervise(this.logger, `consumer ${this.name} on ${b.stream}`, async (signal) => {
          let reader = first;
          first = undefined;
          if (!reader) {
            // The runner may stop while this restart waits for JetStream: a reader opened after the stop
            // would be stopped by nothing, and its loop would hold the stop (and the shutdown) for good.
            await this.ensure(signal);
            if (signal.aborted) return;
            reader = await this.#open(b);
            if (signal.aborted) return this.#close(reader);
          }
          await this.#loop(b, reader, signal);
        }),
      );
    }
  }

  /** Whether it runs (or is starting). */
  get running(): boolean {
    return this.#run !== undefined;
  }

  /**
   * Stops consuming and waits for the batch in progress — also when called again meanwhile, or when the
   * runner was already stopping. A start in progress is ended.
   */
  stop(): Promise<void> {
    const run = this.#run;
    if (run) {
      this.#run = undefined;
      run.ctl.abort();
      const previous = this.#stopped;
      this.#stopped = (async () => {
        await previous;
        await run.starting.catch(() => undefined);
        await Promise.all(run.tasks.map((t) => t.stop()));
      })();
    }
    return this.#stopped;
  }

  /** Pending and ack-pending per binding. */
  async lag(): Promise<{ stream: string; pending: number; ackPending: number }[]> {
    return (await this.ackFloors()).map(({ stream, pending, ackPending }) => ({ stream, pending, ackPending }));
  }

  /**
   * Pending and ack-pending per binding, every durable asked at once; a binding whose read failed gives
   * its error instead, so that it does not hide the others'.
   */
  async lagSettled(): Promise<({ stream: string; pending: number; ackPending: number } | { stream: string; err: unknown })[]> {
    const infos = await Promise.allSettled(this.bindings.map((b) => this.jsm.consumers.info(b.stream, this.name)));
    return infos.map((r, i) => {
      const stream = this.bindings[i]!.stream;
      return r.status === "fulfilled" ? { stream, pending: r.value.num_pending, ackPending: r.value.num_ack_pending } : { stream, err: r.reason as unknown };
    });
  }

  // The durable's info on `stream`; undefined when it does not exist. Any other failure rejects.
  async #infoIfAny(stream: string): Promise<ConsumerInfo | undefined> {
    return this.jsm.consumers.info(stream, this.name).catch((err: unknown) => {
      if (isConsumerNotFound(err)) return undefined;
      throw err;
    });
  }

  /**
   * Per binding, what its durable has out for whoever reads it (stranded.ts), with the stream it is on; a
   * durable not found has nothing out and is left out. Any other failure to read one rejects.
   */
  async outstanding(): Promise<(DurableOut & { stream: string })[]> {
    const read = await Promise.all(
      this.bindings.map(async (b) => {
        const info = await this.#infoIfAny(b.stream);
        if (!info) return undefined;
        return {
          stream: b.stream,
          ackPending: info.num_ack_pending,
          waiting: info.num_waiting,
          lastDelivered: serverTime(info.delivered.last_active),
          // Unset: the server's default, 30 s.
          ackWaitMs: info.config.ack_wait ? Math.ceil(info.config.ack_wait / 1e6) : 30_000,
          floor: info.ack_floor.stream_seq,
          delivered: { stream: info.delivered.stream_seq, consumer: info.delivered.consumer_seq },
        };
      }),
    );
    return read.filter((r) => r !== undefined);
  }

  /**
   * Hands back to JetStream at once (NAKs, stranded.ts) every delivery out above each durable's floor, as
   * `out` read them — for a reader just taken over, whose former holder will never handle them and, when
   * no pull request of its waits at the server, can take no more. Resolves true once the server has put
   * them all back (they then come before anything newer, in stream order); false when one durable has too
   * many to name, or the connection is away: then they are waited for.
   */
  async returnStranded(out: readonly (DurableOut & { stream: string })[], max?: number): Promise<boolean> {
    const nc = connectionOf(this.jsm);
    if (!nc) return false;
    const all: string[][] = [];
    for (const d of out) {
      if (d.ackPending === 0) continue;
      const subjects = nakSubjects(d.stream, this.name, d, max);
      if (!subjects) return false;
      all.push(subjects);
    }
    for (const subjects of all) {
      for (const subject of subjects.slice(0, -1)) nc.publish(subject, NAK);
      await nc.request(subjects.at(-1)!, NAK, { timeout: 5000 });
    }
    return true;
  }

  /** Per binding, the durable's ack floor: the stream sequence up to which every message it reads is acknowledged. */
  async ackFloors(): Promise<{ stream: string; filter: string; ackFloor: number; pending: number; ackPending: number }[]> {
    return Promise.all(
      this.bindings.map(async (b) => {
        const info = await this.jsm.consumers.info(b.stream, this.name);
        return { stream: b.stream, filter: b.filter, ackFloor: info.ack_floor.stream_seq, pending: info.num_pending, ackPending: info.num_ack_pending };
      }),
    );
  }

  // nats.js would wait for a deleted durable to come back by itself; nothing else recreates it, so the
  // loop ends instead (deleted, or found missing) and its supervisor starts it again through ensure().
  // The reader starts from the durable's positions as `get` read them, before the first pull. A durable
  // found with another ack policy (replaced since ensure()) ends the loop, and ensure() recreates it.
  async #open(b: Binding): Promise<Reader> {
    const consumer = await this.js.consumers.get(b.stream, this.name);
    const info = await consumer.info(true);
    if (info.config.ack_policy !== AckPolicy.All) throw new Error(`consumer ${this.name} on ${b.stream} acks ${info.config.ack_policy}, not by floor; recreating it`);
    const handBack = (seqs: readonly number[], nextDelivery: number) => {
      const nc = connectionOf(this.jsm);
      for (const seq of seqs) nc?.publish(nakSubject(b.stream, this.name, seq, nextDelivery), NAK);
    };
    const acks = new FloorAcks(info, () => this.jsm.consumers.info(b.stream, this.name), (reply) => connectionOf(this.jsm)?.publish(reply, ACK), handBack, this.logger.child({ stream: b.stream }), this.stats);
    const messages = await consumer.consume({ max_messages: 256, expires: PULL_EXPIRES_MS, abort_on_missing_resource: true });
    watch(
      this.logger,
      `consumer ${this.name} status`,
      (async () => {
        for await (const s of messages.status()) {
          if (s.type === "consumer_deleted") {
            this.logger.warn({ consumer: this.name, stream: b.stream }, "durable consumer deleted; recreating it");
            messages.stop();
          }
        }
      })(),
    );
    return { messages, acks, pending: info.num_pending };
  }

  // A reader that never looped.
  #close({ messages, acks }: Reader): void {
    acks.close();
    messages.stop();
  }

  // Messages buffer while a batch commits; the next batch takes all of them (group commit for consumers).
  // Batches commit strictly one after another, but the next one is decoded while the one before
  // commits (on the write worker's thread, or the driver's): the decode is most of a consumer's
  // main-thread work, and done this way it no longer adds to the wait for the database. Through the
  // write worker the next one is also sent while the one before commits (see `pipelined`).
  async #loop(b: Binding, { messages, acks, pending }: Reader, signal: AbortSignal): Promise<void> {
    const buffer: JsMsg[] = [];
    const gate: Gate = { halted: false };
    // The iteration of the durable's messages is over.
    let ended = false;
    let working: Promise<void> | undefined;
    const watched = this.backlogWatch;
    const backlog = watched && new ReaderBacklog(watched.limit, performance.now(), pending);
    if (backlog) this.backlogs.add(backlog);
    // A batch is finished: applied (progress), or failed and handed back (no progress: a reader whose
    // batches keep failing counts as stalled and holds no command back).
    const finished = (n: number, progressed: boolean) => {
      if (!backlog) return;
      backlog.finished(n, progressed ? performance.now() : undefined);
      watched.changed();
    };
    // Through the write worker (EventHandler.pipelines) a batch is sent once the one before it is in the
    // worker's queue, not committed: the worker commits them in the order sent, and a batch whose
    // predecessor failed does not commit (BatchLink). Elsewhere one batch applies at a time.
    const pipelined = this.handler.pipelines;
    // Pipelined, a message that arrives while the buffer is empty and batches are at the worker wakes the
    // loop, so that it goes to the worker behind them rather than after their commit.
    let wake: (() => void) | undefined;
    const work = async () => {
      // The latest batch's application (its one-by-one fallback included), and the one before it.
      let applying: Promise<void> | undefined;
      let older: Promise<void> | undefined;
      let link: BatchLink | undefined;
      for (;;) {
        // Halted behind a failed event: what is buffered stays unacknowledged, for the next holder, in order.
        if (gate.halted) buffer.length = 0;
        if (buffer.length === 0) {
          // Ends only with nothing in the buffer and nothing applying, in the same turn as `working` is cleared.
          if (!applying) break;
          const settled = Promise.all([older, applying]).then(() => true);
          const woken = pipelined ? new Promise<boolean>((r) => (wake = () => r(false))) : undefined;
          const done = await (woken ? Promise.race([settled, woken]) : settled);
          wake = undefined;
          if (done) applying = older = link = undefined;
          // Woken: what else arrives in this turn joins the batch.
          else await new Promise<void>((r) => setImmediate(r));
          continue;
        }
        // Deliveries of another reader are out: what arrived waits until they are here too, then all of it
        // goes in stream order (FloorAcks.holding). Stopped meanwhile, it stays unacknowledged, for the next holder.
        if (acks.holding) {
          this.stats.heldBack++;
          const since = performance.now();
          await acks.settled(signal);
          // Stopped, or the iteration ended (the durable deleted, the connection closed): what is held stays
          // unacknowledged, for the next reader, in order.
          if (signal.aborted || ended) {
            buffer.length = 0;
            continue;
          }
          // Put in stream order below, before the first batch, as any buffer that is not.
          if (!acks.clean) {
            this.stats.heldBackTimedOut++;
            this.logger.warn({ consumer: this.name, stream: b.stream, held: buffer.length, waited_ms: Math.round(performance.now() - since) }, "another reader still keeps deliveries of this durable: applying what arrived without them, in stream order");
          } else if (buffer.length > 0) {
            this.logger.info({ consumer: this.name, stream: b.stream, held: buffer.length, waited_ms: Math.round(performance.now() - since) }, "an earlier reader's deliveries are back: applying what was held, in stream order");
          }
          continue;
        }
        // After a hold, or clean again while the loop was busy elsewhere (an event retried in place, a batch one
        // by one): what came back meanwhile sits behind newer deliveries.
        if (!ascending(buffer)) inStreamOrder(buffer);
        const batch = buffer.splice(0, 256);
        let prepared: Prepared;
        try {
          prepared = await this.#prepare(b, acks, batch, gate, signal);
        } catch (err) {
          this.#failed(batch, err);
          finished(batch.length, false);
          continue;
        }
        // A later event must never commit before an earlier one: one batch at a time, or (pipelined) at
        // most two at the worker, the later one sent once the earlier is queued there.
        if (pipelined) {
          await older;
          await link?.queued;
          // Behind a batch whose first attempt failed this one would be refused: it waits for that one's
          // retry instead, and starts the chain afresh (nothing is in flight then).
          if (link?.state === "failed") {
            await applying;
            link = undefined;
          }
        } else await applying;
        // What the batch settled without applying (other types, dead letters) may already raise the floor.
        acks.flush();
        if (pipelined) link = new BatchLink(link);
        older = applying;
        applying = this.#apply(prepared, pipelined ? link : undefined, older).then(
          () => {
            acks.flush();
            finished(batch.length, true);
          },
          (err: unknown) => {
            this.#failed(batch, err);
            acks.flush();
            finished(batch.length, false);
          },
        );
        // Lets the apply reach the database before the next decode, and what arrived meanwhile into the buffer.
        await new Promise<void>((r) => setImmediate(r));
      }
      working = undefined;
    };
    // The stop ends the iteration, also of a reader opened after stop() looked at the open ones.
    const abort = () => messages.stop();
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
    try {
      for await (const m of messages) {
        acks.received(m);
        backlog?.delivered(m.info.pending, performance.now());
        buffer.push(m);
        wake?.();
        working ??= new Promise<void>((r) => setImmediate(r)).then(work);
      }
    } finally {
      signal.removeEventListener("abort", abort);
      // Ends a hold at once (acks of batches applying still go out).
      ended = true;
      acks.close();
      await working;
      if (backlog) this.backlogs.delete(backlog);
      messages.stop();
    }
  }

  // A batch failed outside any one event's handling: its messages go back to JetStream for redelivery.
  #failed(batch: JsMsg[], err: unknown): void {
    this.stats.failures++;
    reportFailure(this.logger, `consumer ${this.name}`, err, "consumer batch failed; its events will be redelivered");
    for (const m of batch) {
      try {
        m.nak(this.retry.backoffMs[0] ?? 1000);
      } catch {
        // The connection is gone: JetStream redelivers after ack_wait anyway.
      }
    }
  }

  // Acks what this subscriber does not handle, dead-letters what does not decode, and decodes the rest.
  async #prepare(b: Binding, acks: FloorAcks, batch: JsMsg[], gate: Gate, signal: AbortSignal): Promise<Prepared> {
    const decoded: { m: JsMsg; e: EnvelopeBase }[] = [];
    for (const m of batch) {
      // Most events of a stream are not this subscriber's (2.9 filters one subject per consumer): the
      // subject names the type (the Event-Type header too, but decoding the header block costs more).
      if (!this.#wants(m)) {
        acks.done(m);
        this.stats.skipped++;
        continue;
      }
      const e = this.#decode(m);
      // Parked at its first failure here; an envelope that could not be upcast is kept as received, for a retry once the code is fixed.
      if (e instanceof PoisonEventError) await this.#deadLetter(b, acks, m, e instanceof NotUpcast ? e.received : undefined, e.message, 1, signal);
      else decoded.push({ m, e });
    }
    // Trace contexts are read only where they are used: by spans, or by the commands a process manager issues.
    const traces = decoded.length > 0 && (activeTracer() || this.handler.subscriber.react) ? decoded.map((d) => traceHeadersOf(d.m.headers)) : undefined;
    return { b, acks, decoded, traces, gate, signal };
  }

  // Applies a decoded batch in one transaction and acks it; on a failure, one by one. Pipelined (`link`),
  // the batch before it (`before`, its fallback included) has settled before this one falls back.
  async #apply({ b, acks, decoded, traces, gate, signal }: Prepared, link?: BatchLink, before?: Promise<void>): Promise<void> {
    if (decoded.length === 0) {
      link?.committed();
      return;
    }
    this.stats.batches++;
    const events = decoded.map((d) => d.e);
    // The batch in one transaction, then its acks.
    const whole = async (l?: BatchLink) => {
      this.#count(await this.handler.applyBatch(events, traces, l));
      for (const d of decoded) acks.done(d.m);
    };
    let again = false;
    try {
      return await whole(link);
    } catch (err) {
      // Also where it failed before reaching the worker (the writer settles the link of one that did):
      // the batch behind must not commit ahead of this one's retry.
      link?.failed();
      // Not run because the batch before failed, or lost with it when the worker stopped: once that one has
      // settled, this one is tried whole again (on the restarted worker).
      again = err instanceof BatchBeforeFailed || (link !== undefined && err instanceof WriteWorkerStopped);
    }
    await before;
    // The batch before halted on a failed event: this one must not overtake it.
    if (gate.halted) return;
    if (again) {
      this.stats.retriedBehind++;
      try {
        return await whole();
      } catch {
        // Fall through to one by one.
      }
    }
    // One of them failed: take them one by one, in order, so the others go through and the bad one is found.
    for (const [i, { m, e }] of decoded.entries()) {
      if (gate.halted || !(await this.#one(b, acks, m, e, traces?.[i], gate, signal))) return;
    }
  }

  /**
   * Handles one event of a failed batch, retrying it in place until it is applied or parked: nothing
   * after it in its stream is applied meanwhile (a refund never overtakes the payment it undoes, an
   * update never the creation it changes), and the messages this reader holds are kept from being
   * redelivered. A transient failure ({@link isTransientFailure}) is retried for as long as it lasts, the
   * back-off growing to its last step (also a fenced one: this instance lost the consumer's lease, and
   * its runner is stopped); any other is parked in the dead letters at the policy's last such failure (transient ones not counted), its
   * failures counted in this process (on its first, once delivered {@link crashLoopDelivery} times). False
   * when the runner stops meanwhile: the reader halts, the event and everything after it stay
   * unacknowledged, for the consumer's next holder.
   */
  async #one(b: Binding, acks: FloorAcks, m: JsMsg, e: EnvelopeBase, trace: TraceHeaders | undefined, gate: Gate, signal: AbortSignal): Promise<boolean> {
    // Failures are counted here, from the first; the deliveries only bound them (crashLoopDelivery).
    const deliveries = m.info.deliveryCount;
    const goingRound = deliveries >= crashLoopDelivery(this.retry);
    // Only failures that are not transient count towards parking: an owner moving for a while (answered
    // `unavailable`) then one bug must not park the event at that first bug (cross-context flows audit).
    let failures = 0;
    for (let attempts = 1; ; attempts++) {
      try {
        this.#count([await this.handler.handle(e, trace)]);
        acks.done(m);
        return true;
      } catch (err) {
        const transient = isTransientFailure(err);
        // Parked at once, not retried in place while every later event waits.
        const poison = isPoisonFailure(err);
        if (!transient) failures++;
        if (poison || (!transient && (failures >= this.retry.maxDeliver || goingRound))) {
          const message = String((err as Error)?.message ?? err);
          const reason = poison || failures >= this.retry.maxDeliver ? message : `delivered ${deliveries} times, parked at its first failure in this process: ${message}`;
          if (await this.#deadLetter(b, acks, m, e, reason, attempts, signal)) return true;
          // Stopped before the letter could be stored: nothing after it may go through.
          gate.halted = true;
          return false;
        }
        if (signal.aborted) {
          gate.halted = true;
          return false;
        }
        this.stats.retries++;
        const delay = this.retry.backoffMs[Math.min(attempts - 1, this.retry.backoffMs.length - 1)] ?? 1000;
        this.logger.warn({ consumer: this.name, event_id: e.event_id, event_type: e.event_type, attempts, failures, deliveries, transient, retry_in_ms: delay, err: String(err) }, "event failed; retrying it before any later event");
        // What went through before it is acknowledged now, not after the retries.
        acks.flush();
        for (let left = delay; left > 0 && !signal.aborted; left -= KEEP_ALIVE_MS) {
          acks.keepAlive();
          await sleep(Math.min(left, KEEP_ALIVE_MS), signal);
        }
        if (signal.aborted) {
          gate.halted = true;
          return false;
        }
      }
    }
  }

  // Whether this subscriber handles the message's event type, by its subject (else by its Event-Type
  // header); one with neither is decoded, and dead-lettered should it not decode.
  #wants(m: JsMsg): boolean {
    const type = eventTypeOfSubject(m.subject) ?? m.headers?.get(Headers.EventType);
    return !type || this.handler.wants(type);
  }

  #count(outcomes: string[]): void {
    for (const o of outcomes) {
      if (o === "handled") this.stats.handled++;
      else if (o === "duplicate") this.stats.duplicates++;
      else this.stats.skipped++;
    }
  }

  #decode(m: JsMsg): EnvelopeBase | PoisonEventError {
    const d = decodeMsgPack(m.data);
    if (!d.ok) return new PoisonEventError(d.error.message);
    const parsed = DeliveredEnvelope.safeParse(d.value);
    if (!parsed.success) return new PoisonEventError(`not a contract envelope: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`);
    const { event_type: type, event_version: version } = parsed.data;
    try {
      return upcasters.upcast(parsed.data);
    } catch (err) {
      // The upcaster may have changed the payload before it threw: what was received is decoded afresh.
      const again = decodeMsgPack(m.data);
      const received = again.ok ? DeliveredEnvelope.safeParse(again.value) : undefined;
      return new NotUpcast(`upcasting ${type} from version ${version} failed: ${String((err as Error)?.message ?? err)}`, received?.success ? received.data : undefined);
    }
  }

  /**
   * Parks an event in the dead letters, then terminates its delivery. Storing it is retried with a
   * growing back-off, the message kept in hand meanwhile: on its last delivery JetStream would never
   * send it again, so giving up here would lose it. A stop leaves it un-acked for a later delivery
   * (false: not parked).
   */
  async #deadLetter(b: Binding, acks: FloorAcks, m: JsMsg, e: EnvelopeBase | undefined, reason: string, attempts: number, signal: AbortSignal): Promise<boolean> {
    const row = {
      consumer: this.name,
      stream: b.stream,
      stream_seq: m.seq,
      event_id: e?.event_id ?? null,
      event_type: e?.event_type ?? null,
      // JSON escapes every control character, U+0000 included: the envelope is always storable text.
      envelope: e ? JSON.stringify(e) : null,
      reason,
      attempts,
    };
    for (let failures = 0; ; failures++) {
      try {
        await this.deadLetters.add(row);
        break;
      } catch (err) {
        this.stats.deadLetterFailures++;
        reportFailure(this.logger, `dead letters of ${this.name}`, err, "could not store a dead letter; will retry");
        if (signal.aborted) {
          m.nak();
          return false;
        }
        m.working();
        await sleep(Math.min(DEAD_LETTER_MAX_BACKOFF_MS, 200 * 2 ** failures), signal);
      }
    }
    this.stats.deadLettered++;
    this.logger.error({ consumer: this.name, stream_seq: m.seq, event_id: e?.event_id, reason }, "event dead-lettered");
    acks.done(m);
    return true;
  }
}
