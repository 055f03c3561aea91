/**
 * What the outbox relay holds back after a failure, and until when — so that one failure stops only what
 * it concerns. A stream the relay cannot ask or publish to (missing, without a leader, full, NATS away)
 * holds back the aggregate type whose events go to it (one type per stream); a row the stream refuses
 * (larger than it takes) holds back its own aggregate, whose later rows wait behind it: events are
 * immutable and their order per aggregate is the contract, so nothing is ever skipped. Every other
 * aggregate is published meanwhile.
 *
 * Held rows stay in the table and are left out of the relay's reads by the query itself (see
 * {@link RelayHolds.exclusion}): a read never returns them, so a large held backlog at the bottom of the
 * table cannot fill every batch. Each hold is tried again after a back-off of its own — a held type once
 * its stream answers a probe (stream info), a held aggregate by publishing its rows again — and the
 * back-off keeps growing across retries that fail again, until a publish of the type or the aggregate is
 * acknowledged.
 */
import { Contexts, contextOf, type AggregateType } from "../../contracts/index.js";
import type { OutboxExclusion, OutboxRow } from "../persistence/index.js";
import { isTransientJetStreamError } from "../nats/transient-errors.js";

/** Back-off of an aggregate held back by a row its stream refused: the first retry, and the longest wait. */
export const ROW_RETRY_MS = { first: 500, max: 30_000 } as const;
/**
 * Back-off of a stream that failed, between probes: short, since most failures pass by themselves (a
 * leader election takes seconds). A stream that answered with a refusal of every message (store failed:
 * full with `discard: new`; insufficient resources) is tried on {@link ROW_RETRY_MS}'s instead: it answers
 * its probe, and only a publish shows whether it takes messages again.
 */
export const STREAM_RETRY_MS = { first: 50, max: 2_000 } as const;
/**
 * Most aggregates of one type held back one by one. A stream refusing the rows of more aggregates than
 * this refuses something of its own (its limits were lowered): its whole type is held then, on
 * {@link ROW_RETRY_MS}'s back-off, and the relay's queries keep a bounded number of parameters.
 */
export const MAX_AGGREGATE_HOLDS = 64;

/** A row the client could not even send (its headers or subject refused while the publish was made): its own failure. */
export class UnsendableRowError extends Error {
  override readonly name = "UnsendableRowError";
}

/** JetStream's codes of a publish refused for the message itself: larger than the stream takes (10054), headers too (10097). */
const ROW_CODES: ReadonlySet<number> = new Set([10054, 10097]);

/** The stream an aggregate type's events go to (asked what it holds of them, and probed). */
export function streamOfType(type: string): string {
  try {
    return Contexts[contextOf(type as AggregateType)].stream;
  } catch {
    return `?${type}`;
  }
}

/** JetStream's error code of a failure (`err_code` of an API error), when it has one. */
export function jetStreamCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; apiError?: unknown } | null;
  // JetStreamApiError and its subclasses (StreamNotFoundError, …), whose names do not all say so.
  return err instanceof Error && typeof e?.apiError === "function" && typeof e.code === "number" ? e.code : undefined;
}

/**
 * Whether a failed publish may have left its message stored, as far as the relay can tell: a timeout, a
 * cut connection, anything unexpected — not an answer (an API error: the stream refused it), and not "no
 * responders" (nats.js's "jetstream is not enabled": no stream took the request). Rows of a stream that
 * failed so are looked up in it before they go out again.
 */
export function outcomeUnknown(err: unknown): boolean {
  if (jetStreamCode(err) !== undefined) return false;
  if (!(err instanceof Error)) return true;
  const e = err as Error & { code?: unknown; cause?: unknown };
  if (e.name === "JetStreamNotEnabled" || e.name === "NoResponders") return false;
  if (e.name === "RequestError" && e.cause instanceof Error && e.cause.name === "NoResponders") return false;
  if (e.name === "JetStreamStatusError" && e.code === 503) return false;
  return true;
}

/**
 * Whether a failed publish says that this message is refused — it would be refused again, whatever else
 * goes through: the stream's "message size exceeds maximum allowed" (10054) or "header size exceeds
 * maximum" (10097), or the client's refusal of the message's arguments (over the server's max_payload, a
 * subject or header it cannot send). Anything else — no responders, a timeout, a cut connection, a stream
 * refusing every message (store failed, insufficient resources, sealed) — says the stream is unavailable.
 */
export function refusesRow(err: unknown): boolean {
  if (!(err instanceof Error) || isTransientJetStreamError(err)) return false;
  if (err.name === "InvalidArgumentError" || err.name === "InvalidSubjectError" || err.name === "UnsendableRowError") return true;
  const code = jetStreamCode(err);
  return code !== undefined && ROW_CODES.has(code);
}

/** Where a failure was met: asking the stream what it holds, publishing, or probing a held stream. */
export type FailureStage = "lookup" | "publish" | "probe";

interface Hold {
  /** The wait before this retry; doubled after each failure. */
  delayMs: number;
  /** When it may be tried again (performance.now()). */
  retryAt: number;
}

interface TypeHold extends Hold {
  stream: string;
}

interface AggregateHold extends Hold {
  type: string;
  id: string;
  partition: number;
}

/** What a hold's start or failure should tell the log: undefined when it was logged less than a minute ago. */
export interface HoldReport {
  /** A new hold (not a retry that failed again). */
  fresh: boolean;
  /** Milliseconds until its next retry. */
  retryInMs: number;
}

/** One aggregate in the relay's maps: `<aggregate_type> NUL <aggregate_id>`. */
export function aggregateKey(type: string, id: string): string {
  return `${type}\u0000${id}`;
}

const LOG_EVERY_MS = 60_000;

/** The relay's holds (see the file's comment). Time is passed in (performance.now()). */
export class RelayHolds {
  readonly #types = new Map<string, TypeHold>();
  readonly #aggregates = new Map<string, AggregateHold>();
  /** Back-offs of holds released for a retry and not yet proven by an acknowledged publish: a failure continues from them. */
  readonly #retrying = new Map<string, number>();
  #version = 0;
  #exclusion: { version: number; value: OutboxExclusion | undefined } = { version: 0, value: undefined };

  /** Whether rows of `row`'s type or aggregate are held back now. */
  holds(row: Pick<OutboxRow, "aggregate_type" | "aggregate_id">): boolean {
    if (this.#types.size === 0 && this.#aggregates.size === 0) return false;
    return this.#types.has(row.aggregate_type) || this.#aggregates.has(aggregateKey(row.aggregate_type, row.aggregate_id));
  }

  /** Whether `type`'s rows are held back as a whole (its stream failed). */
  typeHeld(type: string): boolean {
    return this.#types.has(type);
  }

  /** Held aggregate types (streams). */
  get types(): number {
    return this.#types.size;
  }

  /** Aggregates held back one by one. */
  get aggregates(): number {
    return this.#aggregates.size;
  }

  /** Whether anything is held back. */
  get any(): boolean {
    return this.#types.size > 0 || this.#aggregates.size > 0;
  }

  /**
   * Holds back `type`'s rows: its stream failed (`slow`: with an answer refusing every message, see
   * {@link STREAM_RETRY_MS}). Returns what to log (undefined: nothing, logged lately). A type held already
   * is left as it is (a publish in flight when the hold began failing too).
   */
  holdType(type: string, now: number, slow = false): HoldReport | undefined {
    if (this.#types.has(type)) return undefined;
    const key = `t${type}`;
    const before = this.#retrying.get(key);
    const pace = slow ? ROW_RETRY_MS : STREAM_RETRY_MS;
    // Failing again after a probe let it go, before any ack: it answers its probes but takes nothing (its
    // subjects edited, a leader without quorum): the retries slow down on to the rows' longest wait.
    const max = before !== undefined && before >= pace.max ? ROW_RETRY_MS.max : pace.max;
    const delayMs = before === undefined ? pace.first : Math.max(pace.first, Math.min(max, before * 2));
    this.#retrying.delete(key);
    const report = this.#sayNow(key, now) ? { fresh: before === undefined, retryInMs: delayMs } : undefined;
    this.#types.set(type, { stream: streamOfType(type), delayMs, retryAt: now + delayMs });
    // Its aggregates held one by one are covered by it now.
    for (const [k, a] of this.#aggregates) if (a.type === type) this.#aggregates.delete(k);
    this.#perType.delete(type);
    this.#version++;
    return report;
  }

  /** Aggregates held one by one, per type. */
  readonly #perType = new Map<string, number>();

  /**
   * Holds back the aggregate of a row its stream refused (the whole type instead when
   * {@link MAX_AGGREGATE_HOLDS} are held already: then `type` is set in the answer).
   */
  holdAggregate(row: Pick<OutboxRow, "aggregate_type" | "aggregate_id">, partition: number, now: number): (HoldReport & { type?: true }) | undefined {
    const key = aggregateKey(row.aggregate_type, row.aggregate_id);
    if (this.#aggregates.has(key) || this.#types.has(row.aggregate_type)) return undefined;
    if ((this.#perType.get(row.aggregate_type) ?? 0) >= MAX_AGGREGATE_HOLDS) {
      const r = this.holdType(row.aggregate_type, now, true);
      // Refusals of this many rows: tried again at the rows' longest pace, not a leader election's.
      const hold = this.#types.get(row.aggregate_type)!;
      hold.delayMs = ROW_RETRY_MS.max;
      hold.retryAt = now + ROW_RETRY_MS.max;
      return r && { ...r, retryInMs: ROW_RETRY_MS.max, type: true };
    }
    const before = this.#retrying.get(key);
    const delayMs = before === undefined ? ROW_RETRY_MS.first : Math.min(ROW_RETRY_MS.max, before * 2);
    this.#retrying.delete(key);
    const report = this.#sayNow(key, now) ? { fresh: before === undefined, retryInMs: delayMs } : undefined;
    this.#aggregates.set(key, { type: row.aggregate_type, id: row.aggregate_id, partition, delayMs, retryAt: now + delayMs });
    this.#perType.set(row.aggregate_type, (this.#perType.get(row.aggregate_type) ?? 0) + 1);
    this.#version++;
    return report;
  }

  /** When each hold (`t<type>`, or an aggregate's key) was last logged, for a minute (pruned as it grows: one entry per aggregate ever refused otherwise). */
  readonly #loggedAt = new Map<string, number>();

  /** Whether the failure of `key` is to be logged now: at most once a minute each. */
  #sayNow(key: string, now: number): boolean {
    if (now - (this.#loggedAt.get(key) ?? -Infinity) < LOG_EVERY_MS) return false;
    if (this.#loggedAt.size >= 1024) for (const [k, at] of this.#loggedAt) if (now - at >= LOG_EVERY_MS) this.#loggedAt.delete(k);
    this.#loggedAt.set(key, now);
    return true;
  }

  /** Held types whose probe is due: each to be released ({@link releaseType}) or held longer ({@link probeFailed}). */
  dueTypes(now: number): Array<{ type: string; stream: string }> {
    const due: Array<{ type: string; stream: string }> = [];
    for (const [type, h] of this.#types) if (h.retryAt <= now) due.push({ type, stream: h.stream });
    return due;
  }

  /** A probe of `type`'s stream is on its way: not due again until it answers ({@link releaseType} or {@link probeFailed}). */
  probeSent(type: string): void {
    const h = this.#types.get(type);
    if (h) h.retryAt = Infinity;
  }

  /** `type`'s stream answered its probe: its rows may go out again (a failure continues its back-off). */
  releaseType(type: string): void {
    const h = this.#types.get(type);
    if (!h) return;
    this.#types.delete(type);
    this.#retrying.set(`t${type}`, h.delayMs);
    this.#version++;
  }

  /** `type`'s stream did not answer its probe: probed again after twice the wait. Returns what to log. */
  probeFailed(type: string, now: number): HoldReport | undefined {
    const h = this.#types.get(type);
    if (!h) return undefined;
    h.delayMs = Math.max(h.delayMs, Math.min(STREAM_RETRY_MS.max, h.delayMs * 2));
    h.retryAt = now + h.delayMs;
    return this.#sayNow(`t${type}`, now) ? { fresh: false, retryInMs: h.delayMs } : undefined;
  }

  /** Releases the held aggregates whose retry is due; returns how many (their rows go out again, in order, from the table). */
  releaseDueAggregates(now: number): number {
    let n = 0;
    for (const [key, h] of this.#aggregates) {
      if (h.retryAt > now) continue;
      this.#dropAggregate(key, h);
      this.#retrying.set(key, h.delayMs);
      n++;
    }
    if (n > 0) this.#version++;
    return n;
  }

  /**
   * Partition `p` is no longer this instance's: its held aggregates are its next owner's to try (and
   * to look up in the stream first, should `p` come back here).
   */
  dropPartition(p: number): void {
    let n = 0;
    for (const [key, h] of this.#aggregates) {
      if (h.partition !== p) continue;
      this.#dropAggregate(key, h);
      this.#retrying.delete(key);
      n++;
    }
    if (n > 0) this.#version++;
  }

  #dropAggregate(key: string, h: AggregateHold): void {
    this.#aggregates.delete(key);
    const left = (this.#perType.get(h.type) ?? 1) - 1;
    if (left > 0) this.#perType.set(h.type, left);
    else this.#perType.delete(h.type);
  }

  /** The aggregate types held back now. */
  heldTypes(): string[] {
    return [...this.#types.keys()];
  }

  /**
   * A publish of `row` was acknowledged: its type's and aggregate's back-off end (the next failure starts
   * over). Returns which of them were being retried after a hold, for the log.
   */
  acknowledged(row: Pick<OutboxRow, "aggregate_type" | "aggregate_id">): { type: boolean; aggregate: boolean } | undefined {
    if (this.#retrying.size === 0) return undefined;
    const type = this.#retrying.delete(`t${row.aggregate_type}`);
    const aggregate = this.#retrying.delete(aggregateKey(row.aggregate_type, row.aggregate_id));
    return type || aggregate ? { type, aggregate } : undefined;
  }

  /** Milliseconds until the next retry of any hold (undefined: none held). */
  nextRetryIn(now: number): number | undefined {
    let at = Infinity;
    for (const h of this.#types.values()) at = Math.min(at, h.retryAt);
    for (const h of this.#aggregates.values()) at = Math.min(at, h.retryAt);
    return at === Infinity ? undefined : Math.max(0, at - now);
  }

  /** What the relay's reads leave out now (undefined: nothing); the same object until a hold changes. */
  exclusion(): OutboxExclusion | undefined {
    if (this.#exclusion.version !== this.#version) {
      this.#exclusion = {
        version: this.#version,
        value: this.any ? { types: [...this.#types.keys()], aggregates: [...this.#aggregates.values()].map((a) => [a.type, a.id] as const) } : undefined,
      };
    }
    return this.#exclusion.value;
  }

  /** Drops every hold and back-off (the relay starts again: its first pass finds out afresh). */
  clear(): void {
    this.#types.clear();
    this.#aggregates.clear();
    this.#perType.clear();
    this.#retrying.clear();
    this.#version++;
  }
}
