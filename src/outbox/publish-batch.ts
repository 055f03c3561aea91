/**
 * One batch of the outbox relay: rows grouped by aggregate, at most one publish in flight per
 * aggregate and `window` in all, so a failed publish is never overtaken by a later version of the same
 * aggregate; each publish only while its partition is still held, and while neither its stream nor its
 * aggregate is held back by a failure (holds.ts): a failure stops only the rows it concerns, the others
 * go on in the same batch.
 */
import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { Contexts, Headers, contextOf, decodeMsgPack, eventTypesOf, type AggregateType, type Context } from "../../contracts/index.js";
import type { OutboxRow } from "../persistence/index.js";
import { partitionOfRow } from "./held-partitions.js";
import { SpanKind, activeTracer, endSpan, startSpan } from "../tracing/index.js";
import { eventHeaders } from "./event-headers.js";
import { UnsendableRowError, aggregateKey } from "./holds.js";
import { eachAtMost } from "../support/each-at-most.js";

/** What a batch needs from its relay: one object per relay, made once (the hot path allocates no more per batch). */
export interface BatchContext {
  readonly js: JetStreamClient;
  /** Asks the stream what it already holds (the verification of queue heads). */
  readonly jsm: JetStreamManager;
  /** Most publishes awaiting their ack at once. */
  readonly window: number;
  /** Whether a row of `p` may be published now: checked right before every publish. */
  mayPublish(p: number): boolean;
  /** Whether some partition's first rows must be looked up in the stream before publishing (one acquired lately). */
  verifying(): boolean;
  /** Whether a queue head must be looked up in the stream before it is published (its partition acquired lately, its stream failed since). */
  mustVerify(row: OutboxRow): boolean;
  /** Whether `row`'s stream or aggregate is held back by a failure: neither it nor its aggregate's later rows go out. */
  holds(row: OutboxRow): boolean;
  /** A lookup (`publish` false) or a publish of `row` failed: the relay holds back what the failure concerns. */
  failed(row: OutboxRow, err: unknown, stage: "lookup" | "publish"): void;
  /** `n` rows of the batch stay in the table, not published, held back (they are read again once their hold ends). */
  skipped(n: number): void;
  /** The aggregate of queue head `row` was looked up in the stream: every row of its queue found stored (`allStored`), or not. */
  checked(row: OutboxRow, allStored: boolean): void;
  /** `n` rows of `p` stay unpublished: the partition is no longer held (its next owner publishes them). */
  dropped(p: number, n: number): void;
  /** A publish of a row of `p` starts. */
  sent(p: number): void;
  /** A row is in the stream: acknowledged, acknowledged as a duplicate, or found there by the verification. */
  stored(row: OutboxRow, p: number, how: "published" | "duplicate" | "verified"): void;
  /** The verification found the stream without `row`, though it holds its aggregate's version `last`: it goes out now, late. */
  missing(row: OutboxRow, p: number, last: number): void;
  /** A publish of `p` ended, acknowledged or failed. */
  settled(p: number): void;
  /** Told each acknowledged publish's seconds from publish to ack. */
  readonly publishAck?: ((seconds: number) => void) | undefined;
}

/** What a batch did: the seqs of the rows now in the stream, and how many lookups and publishes failed. */
export interface BatchResult {
  acked: number[];
  failures: number;
}

/**
 * Publishes `rows` (in seq order) as described above; with `verifyAll` every aggregate's queue is looked up
 * in the stream first, else those the context says must be (ctx.mustVerify: the relay's checks after a
 * start, a failure, a partition acquired).
 */
export async function publishBatch(rows: OutboxRow[], ctx: BatchContext, verifyAll: boolean): Promise<BatchResult> {
  const queues = new Map<string, OutboxRow[]>();
  for (const r of rows) {
    const key = aggregateKey(r.aggregate_type, r.aggregate_id);
    const q = queues.get(key);
    if (q) q.push(r);
    else queues.set(key, [r]);
  }
  const acked: number[] = [];
  const failures = { n: 0 };
  if (verifyAll || ctx.verifying()) await dropStored(queues, acked, ctx, verifyAll, failures);
  const ready = [...queues.keys()].filter((k) => queues.get(k)!.length > 0);
  let inflight = 0;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (inflight < ctx.window && ready.length > 0) {
        const key = ready.shift()!;
        const queue = queues.get(key)!;
        const row = queue.shift()!;
        const p = partitionOfRow(row);
        if (!ctx.mayPublish(p)) {
          // No longer ours: neither this row nor its aggregate's later ones go out; the table keeps them.
          ctx.dropped(p, 1 + queue.length);
          queue.length = 0;
          continue;
        }
        if (ctx.holds(row)) {
          // Its stream failed, or refused this aggregate's row, since the batch began: the table keeps them.
          ctx.skipped(1 + queue.length);
          queue.length = 0;
          continue;
        }
        inflight++;
        ctx.sent(p);
        const sentAt = performance.now();
        let span: ReturnType<typeof startSpan> | undefined;
        let publishing: Promise<{ duplicate: boolean }>;
        try {
          // Content-Type, Event-Type, Event-Version, the causing command's trace context whether or not tracing
          // runs here (CONTRACT.md §2), and Nats-Msg-Id (JetStream's de-duplication): see event-headers.ts.
          const h = eventHeaders(row);
          const tracer = activeTracer();
          span = tracer && startSpan(tracer, `publish ${row.event_type}`, SpanKind.PRODUCER, row, { "messaging.destination.name": row.subject, "messaging.message.id": row.event_id });
          publishing = ctx.js.publish(row.subject, row.body, { headers: h });
        } catch (err) {
          // A row the client cannot even send (a header it refuses): this row's failure, as a refusal is
          // (it holds back its aggregate alone), whatever the error's kind.
          publishing = Promise.reject(new UnsendableRowError(err instanceof Error ? err.message : String(err), { cause: err }));
        }
        // Each outcome settles the publish itself: a `.finally` after the `.then` cost every row two more
        // promises and closures of its own.
        const settle = (): void => {
          inflight--;
          ctx.settled(p);
          if (inflight === 0 && ready.length === 0) resolve();
          else pump();
        };
        publishing.then(
          (ack) => {
            try {
              ctx.publishAck?.((performance.now() - sentAt) / 1000);
              endSpan(span);
              acked.push(Number(row.seq));
              ctx.stored(row, p, ack.duplicate ? "duplicate" : "published");
              if (queue.length > 0) ready.push(key);
            } finally {
              settle();
            }
          },
          (err) => {
            try {
              endSpan(span, err);
              failures.n++;
              ctx.failed(row, err, "publish");
              // Its later rows wait behind it, in the table.
              if (queue.length > 0) ctx.skipped(queue.length);
              queue.length = 0;
            } finally {
              settle();
            }
          },
        );
      }
      if (inflight === 0) resolve();
    };
    pump();
  });
  return { acked, failures: failures.n };
}

/**
 * The rows of a queue are the aggregate's unmarked ones — not only one whose ack never came (a crash, a
 * timeout, a former owner's last publish) but also those acknowledged whose delete had not committed yet
 * when the process died. So the stream's last message of the aggregate (any event type:
 * `events.<context>.*.<id>`) is read: a queued row above its version was never published (one publish in
 * flight per aggregate), and every queued row up to it is looked up as the message it would be (its
 * version, its msg id) and marked instead of published again when it is there: exactly once even when
 * the outage outlasted JetStream's duplicate window. A row below the last version that the stream lacks
 * is published, late, and reported (`missing`): one committed without the relay hearing of it once went
 * out behind its successor, and taking "the stream holds V, so every version below" for granted then
 * deleted it for good. (Only the head used to be looked up, by its own subject: a second stored row, or
 * a head followed by a stored row of the same type, went out twice.)
 */
async function dropStored(queues: Map<string, OutboxRow[]>, acked: number[], ctx: BatchContext, all: boolean, failures: { n: number }): Promise<void> {
  const heads = [...queues.values()].filter((q) => all || ctx.mustVerify(q[0]!));
  // A few lookups at a time, and none of a stream started once one of it failed (the failure holds the
  // stream back; its aggregates are not published unverified, which would count on the duplicate window
  // alone): a pass after a failure may hold a thousand aggregates, and a burst of a thousand requests
  // would land on JetStream's API exactly while it recovers (a stream leader's election).
  await eachAtMost(heads, VERIFY_AT_ONCE, async (q) => {
    const head = q[0]!;
    if (ctx.holds(head)) return;
    try {
      await verifyQueue(q, acked, ctx);
    } catch (err) {
      failures.n++;
      ctx.failed(head, err, "lookup");
    }
  });
  // Queues of streams held back now stay in the table, all of them, verified or not.
  for (const q of queues.values()) {
    if (q.length === 0 || !ctx.holds(q[0]!)) continue;
    ctx.skipped(q.length);
    q.length = 0;
  }
}

/** Lookups of the stream at once in a verification pass. */
export const VERIFY_AT_ONCE = 32;

// Marks the rows of one aggregate's queue that the stream holds already (see dropStored).
async function verifyQueue(q: OutboxRow[], acked: number[], ctx: BatchContext): Promise<void> {
  const head = q[0]!;
  const context = contextOf(head.aggregate_type as AggregateType);
  const stream = Contexts[context].stream;
  // Undefined only when no subject of the aggregate has a message; any failure (an election, a timeout)
  // fails the lookup, and its stream is held: taken for "absent", it would publish rows again past the window.
  const last = await lastOfAggregate(ctx.jsm, stream, context, q);
  const top = last ? versionOf(last, q) : undefined;
  if (!last || top === undefined) return void ctx.checked(head, false);
  const stored = new Set<OutboxRow>();
  // From the highest version down: each row's message lies before the one found for the row above it.
  let above = last;
  for (let i = q.length - 1; i >= 0; i--) {
    const row = q[i]!;
    const v = Number(row.aggregate_version);
    if (v > top) continue;
    const m = v === top ? last : await findVersion(ctx.jsm, stream, row.subject, row, above.seq - 1, q);
    if (m && m.header?.get(Headers.MsgId) === row.event_id && versionOf(m, q) === v) {
      stored.add(row);
      above = m;
    }
  }
  const unstored: OutboxRow[] = [];
  for (const row of q) {
    const p = partitionOfRow(row);
    if (stored.has(row)) {
      acked.push(Number(row.seq));
      ctx.stored(row, p, "verified");
    } else {
      if (Number(row.aggregate_version) <= top) ctx.missing(row, p, top);
      unstored.push(row);
    }
  }
  ctx.checked(head, unstored.length === 0);
  q.length = 0;
  q.push(...unstored);
}

/**
 * The stream's last message of the aggregate of queue `q`, of any of its event types — those its context
 * emits and those of its queued rows — or undefined when it has none. Asked one literal subject at a time
 * (`events.<context>.<type>.<id>`): a wildcard subject (`events.<context>.*.<id>`, as it was) makes
 * nats-server 2.9 search the subjects of every block of the stream, 20 ms a lookup over 100,000 subjects
 * here against 0.23 ms for a literal one (`npm run bench:relay-catch-up`).
 */
async function lastOfAggregate(jsm: JetStreamManager, stream: string, context: Context, q: readonly OutboxRow[]): Promise<StoredMsg | undefined> {
  const subject = q[0]!.subject;
  const first = subject.indexOf(".");
  const second = subject.indexOf(".", first + 1);
  const third = subject.indexOf(".", second + 1);
  const types = new Set<string>(eventTypesOf(context));
  for (const r of q) types.add(r.event_type);
  let last: StoredMsg | undefined;
  for (const type of types) {
    const m = await jsm.streams.getMessage(stream, { last_by_subj: `${subject.slice(0, second + 1)}${type}${subject.slice(third)}` });
    if (m && (!last || m.seq > last.seq)) last = m;
  }
  return last;
}

/**
 * `row`'s message among the aggregate's at stream sequences up to `hi`, or the first of a later version
 * (undefined when the stream cannot say), searched among the messages of its own subject (a literal one:
 * see lastOfAggregate). The aggregate's versions grow with the stream sequence, so it
 * is searched for: backwards from `hi` in growing steps (a message of the row just below the one above
 * is found in a step or few), then by halves. A message get with `next_by_subj` (STREAM.MSG.GET, nats-server 2.9) answers
 * each step with the aggregate's first message at or after a sequence.
 */
async function findVersion(jsm: JetStreamManager, stream: string, filter: string, row: OutboxRow, hi: number, q: readonly OutboxRow[]): Promise<StoredMsg | undefined> {
  const target = Number(row.aggregate_version);
  let lo = 1;
  let found: StoredMsg | undefined;
  let step = 1;
  let galloping = true;
  while (lo <= hi) {
    const at = galloping ? Math.max(lo, hi - step + 1) : lo + Math.floor((hi - lo) / 2);
    // MsgRequest lacks next_by_subj, which STREAM.MSG.GET takes as the direct get does.
    const m = await jsm.streams.getMessage(stream, { seq: at, next_by_subj: filter } as unknown as { seq: number });
    if (!m || m.seq > hi) {
      // None of the subject's messages lies in [at, hi]: lower.
      hi = at - 1;
      if (galloping) step *= 2;
      continue;
    }
    const v = versionOf(m, q);
    if (v === undefined) return undefined;
    if (v === target && m.header?.get(Headers.MsgId) === row.event_id) return m;
    if (v < target) {
      lo = m.seq + 1;
      galloping = false;
    } else {
      found = m;
      hi = at - 1;
      step *= 2;
    }
  }
  return found;
}

// The aggregate_version of a stored message: its envelope's, else (a body that does not decode as one) that of the queued row it is by its msg id.
function versionOf(m: StoredMsg, q: readonly OutboxRow[]): number | undefined {
  const d = decodeMsgPack(m.data);
  const v = d.ok ? (d.value as { aggregate_version?: unknown } | null)?.aggregate_version : undefined;
  if (typeof v === "number" && Number.isInteger(v)) return v;
  const id = m.header?.get(Headers.MsgId);
  const row = id ? q.find((r) => r.event_id === id) : undefined;
  return row ? Number(row.aggregate_version) : undefined;
}
