/** The consumer-side ceiling: a durable pull consumer reading a whole stream with `consume()` and acking each message. */
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/nats-core";

/** Options of one raw consume run. */
export interface RawConsumeOptions {
  stream: string;
  filter: string;
  /** Durable name; the consumer is deleted afterwards. */
  durable: string;
  /** Messages to read: the whole stream. */
  messages: number;
  deadline: number;
  /** Work done on each message before its ack (none for the bare baseline). */
  work?: (m: JsMsg) => void;
}

/** One raw consume run. */
export interface RawConsumeResult {
  messages: number;
  seconds: number;
  perSecond: number;
}

// The same consumer settings as ConsumerRunner's, so the ratio to it measures processing, not configuration.
export const RUNNER_LIKE = { maxAckPending: 1000, maxMessages: 256 } as const;

/**
 * Reads `messages` from a fresh durable consumer (explicit ack, from the first message), acking each,
 * and times from the first pull until the server holds no pending and no unacked message.
 */
export async function benchRawConsume(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, o: RawConsumeOptions): Promise<RawConsumeResult> {
  await jsm.consumers.add(o.stream, {
    durable_name: o.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: o.filter,
    ack_wait: nanos(30_000),
    max_ack_pending: RUNNER_LIKE.maxAckPending,
  });
  try {
    const consumer = await js.consumers.get(o.stream, o.durable);
    const started = performance.now();
    const messages = await consumer.consume({ max_messages: RUNNER_LIKE.maxMessages });
    const timer = setTimeout(() => messages.stop(), Math.max(0, o.deadline - Date.now()));
    let n = 0;
    try {
      for await (const m of messages) {
        o.work?.(m);
        m.ack();
        if (++n >= o.messages) messages.stop();
      }
    } finally {
      clearTimeout(timer);
    }
    if (n < o.messages) throw new Error(`raw consumer ${o.durable} read ${n} of ${o.messages} messages before its deadline`);
    await nc.flush();
    await waitDrained(jsm, o.stream, o.durable, o.deadline);
    const seconds = (performance.now() - started) / 1000;
    return { messages: n, seconds, perSecond: n / seconds };
  } finally {
    await jsm.consumers.delete(o.stream, o.durable).catch(() => false);
  }
}

/** Waits until a consumer has nothing pending and nothing unacknowledged. */
export async function waitDrained(jsm: JetStreamManager, stream: string, durable: string, deadline: number, everyMs = 5): Promise<void> {
  for (;;) {
    const info = await jsm.consumers.info(stream, durable);
    if (info.num_pending === 0 && info.num_ack_pending === 0) return;
    if (Date.now() >= deadline) throw new Error(`consumer ${durable} still has ${info.num_pending} pending and ${info.num_ack_pending} unacked at its deadline`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
