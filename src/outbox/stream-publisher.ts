/**
 * The relay's JetStream publishes, their acks taken on one subscription of the connection. What
 * `JetStreamClient.publish` does per message — a request with its own token, timer, headers object
 * (a Map of arrays, each name canonicalised and each value checked by a regular expression) and options
 * copied twice — is here an entry in a ring, headers written once as bytes, and one timer for every
 * publish in flight. The ack means the same: the stream stored the message (or already had its
 * `Nats-Msg-Id`: `duplicate`); anything else — an error reply, no responders (the stream is not there or has
 * no leader), no answer within the timeout — fails the publish, which the relay then verifies and retries.
 */
import { createInbox, type MsgHdrs, type NatsConnection, type Msg, type Subscription } from "@nats-io/nats-core";
import { Headers } from "../../contracts/index.js";

/** A publish acknowledged by its stream. */
export interface StreamAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** What one publish of an event carries in its headers (besides `Nats-Msg-Id`, its event id). */
export interface EventHeaders {
  contentType: string;
  eventType: string;
  eventVersion: number;
  traceparent?: string | null | undefined;
  tracestate?: string | null | undefined;
}

/** A publish JetStream refused or did not answer. */
export class StreamPublishError extends Error {
  constructor(
    message: string,
    /** JetStream's error code (`err_code`), the status (503: no responders) or undefined (a timeout). */
    readonly code?: number,
  ) {
    super(message);
    this.name = "StreamPublishError";
  }
}

interface InFlight {
  seq: number;
  sentAt: number;
  resolve: (ack: StreamAck) => void;
  reject: (err: Error) => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CRLF = /[\r\n]/;

/** The `NATS/1.0` header block of one event's publish, as bytes. */
export function eventHeaderBytes(eventId: string, h: EventHeaders): Uint8Array {
  let s = `NATS/1.0\r\n${Headers.ContentType}: ${h.contentType}\r\n${Headers.EventType}: ${h.eventType}\r\n${Headers.EventVersion}: ${h.eventVersion}\r\n`;
  // A trace context that could break the header block is dropped, as W3C has a receiver drop an invalid one.
  if (h.traceparent && !CRLF.test(h.traceparent)) {
    s += `${Headers.TraceParent}: ${h.traceparent}\r\n`;
    if (h.tracestate && !CRLF.test(h.tracestate)) s += `${Headers.TraceState}: ${h.tracestate}\r\n`;
  }
  if (CRLF.test(eventId) || CRLF.test(h.eventType) || CRLF.test(h.contentType)) throw new StreamPublishError(`event ${JSON.stringify(eventId)}: a header value holds a line break`);
  return encoder.encode(`${s}${Headers.MsgId}: ${eventId}\r\n\r\n`);
}

/** Who publishes the relay's events: {@link StreamPublisher}, or a test's wrapper around one. */
export interface EventPublisher {
  publish(subject: string, body: Uint8Array, headers: Uint8Array): Promise<StreamAck>;
}

/** Publishes to JetStream with acks on one subscription; `close()` fails what is in flight. */
export class StreamPublisher implements EventPublisher {
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #sub: Subscription;
  readonly #timeoutMs: number;
  readonly #sweeper: NodeJS.Timeout;
  /** In flight by `seq & mask`; grows (doubling) when a slot is still taken. */
  #ring: (InFlight | undefined)[] = new Array<InFlight | undefined>(256).fill(undefined);
  #mask = 255;
  #next = 0;
  #inflight = 0;
  #closed = false;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    this.#prefix = `${createInbox()}.`;
    this.#sub = nc.subscribe(`${this.#prefix}*`, { callback: (err, msg) => (err ? this.#failAll(err) : this.#answer(msg)) });
    this.#sweeper = setInterval(() => this.#expire(), Math.max(50, Math.min(1000, Math.floor(timeoutMs / 4))));
    this.#sweeper.unref();
  }

  /** Publishes at once (the connection buffers it); resolves with the stream's ack. */
  publish(subject: string, body: Uint8Array, headers: Uint8Array): Promise<StreamAck> {
    if (this.#closed) return Promise.reject(new StreamPublishError("the publisher is closed"));
    return new Promise<StreamAck>((resolve, reject) => {
      const seq = ++this.#next;
      this.#place({ seq, sentAt: performance.now(), resolve, reject });
      try {
        // nats.js writes a message's headers from their encode(): these are bytes already.
        this.#nc.publish(subject, body, { reply: `${this.#prefix}${seq}`, headers: { encode: () => headers } as unknown as MsgHdrs });
      } catch (err) {
        this.#take(seq);
        reject(err as Error);
      }
    });
  }

  /** Publishes awaiting their ack. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Stops listening; publishes in flight fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#sub.unsubscribe();
    this.#failAll(new StreamPublishError("the publisher is closed"));
  }

  #place(f: InFlight): void {
    while (this.#ring[f.seq & this.#mask] !== undefined) this.#grow();
    this.#ring[f.seq & this.#mask] = f;
    this.#inflight++;
  }

  #grow(): void {
    const old = this.#ring;
    this.#ring = new Array<InFlight | undefined>(old.length * 2).fill(undefined);
    this.#mask = this.#ring.length - 1;
    for (const f of old) if (f) this.#ring[f.seq & this.#mask] = f;
  }

  #take(seq: number): InFlight | undefined {
    const i = seq & this.#mask;
    const f = this.#ring[i];
    if (f?.seq !== seq) return undefined;
    this.#ring[i] = undefined;
    this.#inflight--;
    return f;
  }

  #answer(msg: Msg): void {
    const seq = Number(msg.subject.slice(this.#prefix.length));
    const f = Number.isSafeInteger(seq) ? this.#take(seq) : undefined;
    // Late (timed out already) or not ours: nothing waits for it.
    if (!f) return;
    if (msg.data.length === 0) {
      const code = msg.headers?.code ?? 0;
      f.reject(new StreamPublishError(code === 503 ? "jetstream is not enabled (no responders: no stream, or no leader, for the subject)" : `status ${code} ${msg.headers?.description ?? ""}`.trim(), code || undefined));
      return;
    }
    let ack: { stream?: string; seq?: number; duplicate?: boolean; error?: { code?: number; err_code?: number; description?: string } };
    try {
      ack = JSON.parse(decoder.decode(msg.data)) as typeof ack;
    } catch {
      f.reject(new StreamPublishError("invalid ack response (not JSON)"));
      return;
    }
    if (ack.error) f.reject(new StreamPublishError(ack.error.description ?? "jetstream error", ack.error.err_code ?? ack.error.code));
    else if (typeof ack.stream !== "string" || ack.stream === "" || typeof ack.seq !== "number") f.reject(new StreamPublishError("invalid ack response"));
    else f.resolve({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true });
  }

  #expire(): void {
    if (this.#inflight === 0) return;
    const due = performance.now() - this.#timeoutMs;
    for (const f of this.#ring) {
      if (f && f.sentAt <= due && this.#take(f.seq)) f.reject(new StreamPublishError(`no ack within ${this.#timeoutMs} ms`));
    }
  }

  #failAll(err: Error): void {
    for (const f of this.#ring) if (f && this.#take(f.seq)) f.reject(err);
  }
}
