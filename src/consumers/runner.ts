/** Runs one subscriber's durable JetStream consumers: decode, apply idempotently, ack after commit, dead-letter poison. */
import { nanos } from "@nats-io/nats-core";
import { AckPolicy, DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { Contexts, EnvelopeBase, Headers, decodeMsgPack, upcasters, type Context } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { DeadLetters } from "./dead-letters.js";
import type { EventHandler } from "./event-handler.js";
import { PoisonEventError } from "./subscriber.js";

/** Retry policy of every consumer. */
export interface RetryPolicy {
  /** Deliveries before an event is dead-lettered. */
  maxDeliver: number;
  /** Delay before each redelivery, by attempt (the last one repeats). */
  backoffMs: number[];
}

/** The default retry policy: five attempts over about twenty seconds. */
export const DEFAULT_RETRY: RetryPolicy = { maxDeliver: 5, backoffMs: [200, 1000, 4000, 15000] };

/** One durable consumer on one stream. */
export interface Binding {
  stream: string;
  filter: string;
}

/** The durable consumers a subscriber needs: one per stream it reads, filtered as narrowly as 2.9 allows. */
export function bindingsOf(handles: Partial<Record<Context, readonly string[]>>): Binding[] {
  return (Object.entries(handles) as [Context, readonly string[]][])
    .filter(([, types]) => types.length > 0)
    .map(([context, types]) => ({ stream: Contexts[context].stream, filter: types.length === 1 ? `events.${context}.${types[0]}.*` : `events.${context}.>` }));
}

/** Figures of one runner. */
export interface RunnerStats {
  handled: number;
  duplicates: number;
  skipped: number;
  deadLettered: number;
  redelivered: number;
}

/** Consumes a subscriber's bindings until stopped. */
export class ConsumerRunner {
  readonly stats: RunnerStats = { handled: 0, duplicates: 0, skipped: 0, deadLettered: 0, redelivered: 0 };
  readonly bindings: Binding[];
  readonly #iterators: ConsumerMessages[] = [];
  readonly #loops: Promise<void>[] = [];

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly handler: EventHandler,
    private readonly deadLetters: DeadLetters,
    private readonly logger: Logger,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
  ) {
    this.bindings = bindingsOf(handler.subscriber.handles);
  }

  /** The durable name. */
  get name(): string {
    return this.handler.subscriber.name;
  }

  /** Creates the durable consumers when absent (from the first event of the stream). */
  async ensure(): Promise<void> {
    for (const b of this.bindings) {
      const existing = await this.jsm.consumers.info(b.stream, this.name).catch(() => undefined);
      if (existing) {
        if (existing.config.filter_subject !== b.filter) throw new Error(`consumer ${this.name} on ${b.stream} filters ${existing.config.filter_subject}, expected ${b.filter}`);
        continue;
      }
      await this.jsm.consumers.add(b.stream, {
        durable_name: this.name,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: b.filter,
        max_deliver: this.retry.maxDeliver,
        ack_wait: nanos(30_000),
        max_ack_pending: 1000,
      });
    }
  }

  /** Starts consuming every binding. */
  async start(): Promise<void> {
    await this.ensure();
    for (const b of this.bindings) {
      const consumer = await this.js.consumers.get(b.stream, this.name);
      const messages = await consumer.consume({ max_messages: 256 });
      this.#iterators.push(messages);
      this.#loops.push(this.#loop(b, messages));
    }
  }

  /** Stops consuming and waits for the batch in progress. */
  async stop(): Promise<void> {
    for (const it of this.#iterators) it.stop();
    await Promise.allSettled(this.#loops);
    this.#iterators.length = 0;
    this.#loops.length = 0;
  }

  /** Pending and ack-pending per binding. */
  async lag(): Promise<{ stream: string; pending: number; ackPending: number }[]> {
    return Promise.all(
      this.bindings.map(async (b) => {
        const info = await this.jsm.consumers.info(b.stream, this.name);
        return { stream: b.stream, pending: info.num_pending, ackPending: info.num_ack_pending };
      }),
    );
  }

  // Messages buffer while a batch commits; the next batch takes all of them (group commit for consumers).
  async #loop(b: Binding, messages: ConsumerMessages): Promise<void> {
    const buffer: JsMsg[] = [];
    let working: Promise<void> | undefined;
    const work = async () => {
      while (buffer.length > 0) await this.#process(b, buffer.splice(0, 256));
      working = undefined;
    };
    for await (const m of messages) {
      buffer.push(m);
      working ??= new Promise<void>((r) => setImmediate(r)).then(work);
    }
    await working;
  }

  async #process(b: Binding, batch: JsMsg[]): Promise<void> {
    const decoded: { m: JsMsg; e: EnvelopeBase }[] = [];
    for (const m of batch) {
      // Most events of a stream are not this subscriber's (2.9 filters one subject per consumer):
      // the Event-Type header lets them be acked without decoding.
      const type = m.headers?.get(Headers.EventType);
      if (type && !this.handler.wants(type)) {
        m.ack();
        this.stats.skipped++;
        continue;
      }
      const e = this.#decode(m);
      if (e instanceof PoisonEventError) await this.#deadLetter(b, m, undefined, e.message);
      else decoded.push({ m, e });
    }
    if (decoded.length === 0) return;
    try {
      this.#count(await this.handler.applyBatch(decoded.map((d) => d.e)));
      for (const d of decoded) d.m.ack();
      return;
    } catch {
      // One of them failed: take them one by one so the others go through and the bad one is found.
    }
    for (const { m, e } of decoded) {
      try {
        this.#count([await this.handler.handle(e)]);
        m.ack();
      } catch (err) {
        const attempts = m.info.deliveryCount;
        if (err instanceof PoisonEventError || attempts >= this.retry.maxDeliver) {
          await this.#deadLetter(b, m, e, String((err as Error)?.message ?? err), attempts);
        } else {
          this.stats.redelivered++;
          const delay = this.retry.backoffMs[Math.min(attempts - 1, this.retry.backoffMs.length - 1)] ?? 1000;
          this.logger.warn({ consumer: this.name, event_id: e.event_id, attempts, err: String(err) }, "event failed; will redeliver");
          m.nak(delay);
        }
      }
    }
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
    const parsed = EnvelopeBase.safeParse(d.value);
    if (!parsed.success) return new PoisonEventError(`not a contract envelope: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`);
    try {
      return upcasters.upcast(parsed.data);
    } catch (err) {
      return new PoisonEventError(String((err as Error).message));
    }
  }

  async #deadLetter(b: Binding, m: JsMsg, e: EnvelopeBase | undefined, reason: string, attempts = m.info.deliveryCount): Promise<void> {
    await this.deadLetters.add({
      consumer: this.name,
      stream: b.stream,
      stream_seq: m.seq,
      event_id: e?.event_id ?? null,
      event_type: e?.event_type ?? null,
      envelope: e ? JSON.stringify(e) : null,
      reason,
      attempts,
    });
    this.stats.deadLettered++;
    this.logger.error({ consumer: this.name, stream_seq: m.seq, event_id: e?.event_id, reason }, "event dead-lettered");
    m.term();
  }
}
