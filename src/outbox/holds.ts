/**
 * What the outbox relay holds back after a failure, and until when. A row JetStream refused (larger than
 * the stream takes, …) holds back its aggregate: the aggregate's later rows wait behind it, since events are
 * immutable and their order is the contract. A stream that could not be asked, or took no publish (missing,
 * without a leader or quorum, full, NATS away), holds back the aggregates whose events go to it. Each is
 * tried again after a back-off of its own, doubled after each failure; every other aggregate is published
 * meanwhile. Nothing is ever skipped for good: a refused row waits until the stream takes it.
 *
 * It also keeps which aggregates' first queued rows must be looked up in the stream before they go out
 * (one whose publish failed may have been stored anyway; one whose lookup failed was not checked).
 */
import { Contexts, contextOf, type AggregateType } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { OutboxRow } from "../persistence/index.js";
import { isTransientJetStreamError } from "../nats/transient-errors.js";
import { sayingAtMostEvery } from "../supervision/index.js";
import { partitionOfRow } from "./held-partitions.js";

/** Back-off of an aggregate held back by a refused row: the first retry, and the longest wait between two. */
export const REFUSED_RETRY_MS = { first: 500, max: 30_000 } as const;
/**
 * Back-off of a stream that failed: short while the failure passes by itself (a leader election takes
 * seconds), longer when the stream answered with a refusal of every message (full, its storage failing).
 */
export const STREAM_RETRY_MS = { first: 50, max: 2_000, maxRefusing: 30_000 } as const;

/** JetStream's "store failed" (10077): the stream's limits (discard new) or its storage refuse every message, not this one. */
const STORE_FAILED = 10077;

/** One aggregate's rows in the relay's maps: `<aggregate_type> NUL <aggregate_id>`. */
export function aggregateKey(row: OutboxRow): string {
  return `${row.aggregate_type}\u0000${row.aggregate_id}`;
}

/** The stream an aggregate's events go to (and that is asked what it holds of them). */
export function streamOf(row: OutboxRow): string {
  try {
    return Contexts[contextOf(row.aggregate_type as AggregateType)].stream;
  } catch {
    return `?${row.aggregate_type}`;
  }
}

/** JetStream's error code of a failure (`err_code` of an API error), when it has one. */
export function jetStreamCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && err.name.startsWith("JetStream") && typeof code === "number" ? code : undefined;
}

/**
 * Whether a failed publish says that the stream refuses this message — it would refuse it again, whatever
 * else goes through: an API error of the stream (message size exceeds maximum allowed, 10054, …) or the
 * client's max_payload. Anything else (no responders, a timeout, a connection cut, a stream refusing every
 * message) says the stream is unavailable.
 */
export function refusesRow(err: unknown): boolean {
  if (!(err instanceof Error) || isTransientJetStreamError(err)) return false;
  if (err.name === "InvalidArgumentError") return /max_payload/i.test(err.message);
  const code = jetStreamCode(err);
  return err.name === "JetStreamApiError" && code !== undefined && code !== STORE_FAILED;
}

/** A held-back aggregate or stream. */
export interface Hold {
  /** Milliseconds waited before this retry; doubled after each failure. */
  delayMs: number;
  /** When it may be tried again (performance.now()). */
  retryAt: number;
  /** The lowest seq held back: a retry reads the table again from there. */
  first: number;
  /** Due, and its rows are being read again (the relay lowered its scan there): they may go out. */
  retrying: boolean;
  /** A row of it was met since the retry began. */
  met: boolean;
}

interface AggregateHold extends Hold {
  partition: number;
  /** The refused row. */
  row: OutboxRow;
  since: number;
}

interface StreamHold extends Hold {
  since: number;
}

/** Per aggregate and per stream, what waits after a failure (see the file's comment). */
export class Holds {
  readonly #aggregates = new Map<string, AggregateHold>();
  readonly #streams = new Map<string, StreamHold>();
  /** Aggregates whose first queued row must be looked up in the stream first, with their partitions. */
  readonly #unsure = new Map<string, number>();
  readonly #logger: Logger;
  readonly #sayRefused = sayingAtMostEvery();
  readonly #sayStream = new Map<string, () => boolean>();
  #unsaid = 0;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Whether anything is held back. */
  get any(): boolean {
    return this.#aggregates.size > 0 || this.#streams.size > 0;
  }

  /** Aggregates held back by a row their stream refused. */
  get stuck(): number {
    return this.#aggregates.size;
  }

  /** Whether any aggregate must be looked up before it is published. */
  get anyUnsure(): boolean {
    return this.#unsure.size > 0;
  }

  /** Whether `row`'s aggregate must be looked up in the stream before its next publish. */
  unsure(row: OutboxRow): boolean {
    return this.#unsure.size > 0 && this.#unsure.has(aggregateKey(row));
  }

  /** `row`'s aggregate must be looked up before its next publish (a row found late, a check that did not happen). */
  markUnsure(row: OutboxRow): void {
    this.#unsure.set(aggregateKey(row), partitionOfRow(row));
  }

  /**
   * Whether `row`'s aggregate must wait: it, or its stream, is held back and not yet being retried. Marks the
   * holds being retried as met (their rows are still there).
   */
  waits(row: OutboxRow): boolean {
    if (!this.any) return false;
    const a = this.#aggregates.get(aggregateKey(row));
    const s = this.#streams.get(streamOf(row));
    if (a?.retrying) a.met = true;
    if (s?.retrying) s.met = true;
    return (a !== undefined && !a.retrying) || (s !== undefined && !s.retrying);
  }

  /** `row` (its aggregate's first queued) waited, with `n` rows in all: the retry reads from there. */
  waited(row: OutboxRow): void {
    const seq = Number(row.seq);
    const a = this.#aggregates.get(aggregateKey(row));
    if (a && !a.retrying) a.first = Math.min(a.first, seq);
    const s = this.#streams.get(streamOf(row));
    if (s && !s.retrying) s.first = Math.min(s.first, seq);
  }

  /** The stream answered a lookup of `row`'s aggregate: its queue is known now. */
  looked(row: OutboxRow): void {
    this.#unsure.delete(aggregateKey(row));
  }

  /**
   * `row` is in the stream: a retry of its aggregate, or of its stream, succeeded. (A hold made by a failure
   * of this same batch stays: the rows it holds back lie behind the scan and are read again only by its retry.)
   */
  published(row: OutboxRow): void {
    if (this.#unsure.size > 0) this.#unsure.delete(aggregateKey(row));
    if (!this.any) return;
    const key = aggregateKey(row);
    const a = this.#aggregates.get(key);
    if (a?.retrying) {
      this.#aggregates.delete(key);
      this.#logger.info({ event_id: a.row.event_id, aggregate_type: row.aggregate_type, aggregate_id: row.aggregate_id, held_ms: Math.round(performance.now() - a.since) }, "an outbox row JetStream had refused is published: its aggregate's events go out again");
    }
    const stream = streamOf(row);
    const s = this.#streams.get(stream);
    if (s?.retrying) {
      this.#streams.delete(stream);
      this.#logger.info({ stream, held_ms: Math.round(performance.now() - s.since) }, "the outbox relay publishes to the stream again");
    }
  }

  /**
   * `row`, its aggregate's first queued, and `n - 1` rows behind it stay unpublished: its lookup or publish
   * failed with `err`. Holds back the aggregate (a refused row) or its stream (anything else), and marks
   * the aggregate to be looked up before its next publish.
   */
  failed(row: OutboxRow, n: number, err: unknown, stage: "lookup" | "publish"): void {
    const now = performance.now();
    this.markUnsure(row);
    if (stage === "publish" && refusesRow(err)) return this.#refused(row, n, err, now);
    const stream = streamOf(row);
    const s = this.#hold(this.#streams, stream, Number(row.seq), now, STREAM_RETRY_MS.first, isTransientJetStreamError(err) ? STREAM_RETRY_MS.max : STREAM_RETRY_MS.maxRefusing);
    if (!s) return;
    let say = this.#sayStream.get(stream);
    if (!say) this.#sayStream.set(stream, (say = sayingAtMostEvery()));
    if (say()) {
      this.#logger.warn(
        { stream, stage, code: jetStreamCode(err), err: errText(err), retry_in_ms: s.delayMs, unsure_aggregates: this.#unsure.size },
        "the outbox relay cannot use this stream: its aggregates' events wait (in order, none skipped); the other streams' go on",
      );
    }
  }

  /** A probe of `stream` (due for a retry) failed: it waits again, longer. */
  probeFailed(stream: string, err: unknown): void {
    const s = this.#streams.get(stream);
    if (s) this.#rearm(s, performance.now(), isTransientJetStreamError(err) ? STREAM_RETRY_MS.max : STREAM_RETRY_MS.maxRefusing);
  }

  #refused(row: OutboxRow, n: number, err: unknown, now: number): void {
    const key = aggregateKey(row);
    const a = this.#hold(this.#aggregates, key, Number(row.seq), now, REFUSED_RETRY_MS.first, REFUSED_RETRY_MS.max, () => ({ partition: partitionOfRow(row), row, since: now }));
    if (!a) return;
    a.row = row;
    if (!this.#sayRefused()) return void this.#unsaid++;
    this.#logger.warn(
      {
        event_id: row.event_id,
        subject: row.subject,
        aggregate_type: row.aggregate_type,
        aggregate_id: row.aggregate_id,
        aggregate_version: Number(row.aggregate_version),
        seq: Number(row.seq),
        code: jetStreamCode(err),
        err: errText(err),
        rows_held_back: n,
        retry_in_ms: a.delayMs,
        stuck_aggregates: this.#aggregates.size,
        unsaid: this.#unsaid,
      },
      "JetStream refused an outbox row: its aggregate's later events wait behind it (retried, never skipped); the others go on",
    );
    this.#unsaid = 0;
  }

  /** Creates or re-arms the hold of `key` after a failure at `seq`; undefined when it waits already (a failure of the same burst). */
  #hold<H extends Hold>(map: Map<string, H>, key: string, seq: number, now: number, first: number, max: number, extra?: () => Omit<H, keyof Hold>): H | undefined {
    const h = map.get(key);
    if (!h) {
      const made = { delayMs: first, retryAt: now + first, first: seq, retrying: false, met: false, since: now, ...extra?.() } as unknown as H;
      map.set(key, made);
      return made;
    }
    if (!h.retrying) {
      h.first = Math.min(h.first, seq);
      return undefined;
    }
    h.first = seq;
    this.#rearm(h, now, max);
    return h;
  }

  #rearm(h: Hold, now: number, max: number): void {
    h.delayMs = Math.min(max, h.delayMs * 2);
    h.retryAt = now + h.delayMs;
    h.retrying = false;
    h.met = false;
  }

  /** Aggregate holds due for a retry now, with their partitions and first seqs; each is marked as being retried. */
  dueAggregates(now: number): { partition: number; first: number }[] {
    const due: { partition: number; first: number }[] = [];
    for (const a of this.#aggregates.values()) if (!a.retrying && a.retryAt <= now) due.push(this.#retry(a, { partition: a.partition, first: a.first }));
    return due;
  }

  /** Streams due for a retry now (probe them first: see {@link retryStream}). */
  dueStreams(now: number): string[] {
    return [...this.#streams].filter(([, s]) => !s.retrying && s.retryAt <= now).map(([name]) => name);
  }

  /** `stream` answered its probe: it is being retried from its first held seq, returned. */
  retryStream(stream: string): number | undefined {
    const s = this.#streams.get(stream);
    return s && this.#retry(s, s.first);
  }

  #retry<T>(h: Hold, out: T): T {
    h.retrying = true;
    h.met = false;
    return out;
  }

  /**
   * The table was read to its end since the retries began. A stream still being retried failed no lookup
   * or publish meanwhile (that would have held it back again): it is over, whatever else held its rows
   * (a refused row holds back its own). An aggregate being retried is over when the reads met none of its
   * rows (they are gone); met, it waited for its stream, and is retried with it.
   */
  readThrough(): void {
    for (const [key, a] of this.#aggregates) if (a.retrying && !a.met) this.#aggregates.delete(key);
    for (const [name, s] of this.#streams) if (s.retrying) this.#streams.delete(name);
  }

  /** Milliseconds until the next hold is due (undefined when none waits on a timer). */
  nextRetryIn(now: number): number | undefined {
    let at = Infinity;
    for (const h of this.#aggregates.values()) if (!h.retrying) at = Math.min(at, h.retryAt);
    for (const h of this.#streams.values()) if (!h.retrying) at = Math.min(at, h.retryAt);
    return at === Infinity ? undefined : Math.max(0, at - now);
  }

  /** Partition `p` is no longer this relay's: its aggregates are its next owner's to retry and look up. */
  forget(p: number): void {
    for (const [key, a] of this.#aggregates) if (a.partition === p) this.#aggregates.delete(key);
    for (const [key, q] of this.#unsure) if (q === p) this.#unsure.delete(key);
  }

  /** Forgets everything (the relay starts). */
  clear(): void {
    this.#aggregates.clear();
    this.#streams.clear();
    this.#unsure.clear();
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
