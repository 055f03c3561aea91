/**
 * Forgetting the inbox rows of projections: consumer_inbox keeps one row per event and consumer, and
 * nothing else deleted them but a replay, so it grew by 1–3 rows per event for good. A projection that
 * declares itself {@link Subscriber.idempotentWithoutInbox} is right without them, and an event is
 * redelivered in the ordinary course within ack_wait (30 s) and re-published within the duplicate window
 * (minutes): past a horizon of days its row only costs space. A process manager's rows are never touched
 * (its commands must not be issued twice, whenever an event comes again).
 *
 * Event ids are UUIDv7, so a consumer's rows older than the horizon are a range of the primary key
 * (consumer, event_id) — `event_id < uuidv7Floor(now − horizon)` — and no index is needed. They go a
 * slice at a time, the next slice after the last id of the one before (a long pass never reads the same
 * part of the key twice), with a pause between slices.
 *
 * A slice is bounded by a read (on SQLite the read-only connection: the ids' count and last one, from the
 * key), then its key range is deleted: on SQLite by the write worker, as one batch in its queue beside the
 * group commits (sharing their transaction and fsync when they come together); without one (PostgreSQL,
 * `NERVE_SQLITE_WRITER=main`) on the main connection. The first design deleted each slice on the main
 * connection in the worker's exclusive turn, as IdempotencyPrune does: on SQLite each statement is a
 * transaction and its fsync on the main thread, and over 1,000,000 rows the first pass held the event loop
 * 4–11 s in all and up to 665 ms at once (`npm run bench:inbox-prune`).
 */
import { setTimeout as sleep, setImmediate as turn } from "node:timers/promises";
import type { ConsumerBatchWriter, Database } from "../persistence/index.js";
import { uuidv7Floor } from "../runtime/uuid7.js";
import type { Subscriber } from "./subscriber.js";

/** Rows deleted per statement: on SQLite with the worker, reading a slice's bounds takes the main thread about 0.3 ms (`npm run bench:inbox-prune`). */
export const INBOX_PRUNE_SLICE = 500;

/** The pause between slices (ms): background work keeps to a share of the main thread and of the write worker. */
export const INBOX_PRUNE_PAUSE_MS = 2;

// Ids are lower-case hex with dashes at the same places, so the order of the key (SQLite's BINARY, and
// PostgreSQL's under any collation: digits before letters) is their time's. `event_id > ?` from '' on.
/** The prune's statements, each served by the primary key (consumer, event_id) alone (inbox-prune.int checks their plans). */
export const INBOX_PRUNE_SQL = {
  /** How many ids the next slice holds and its last one, read from the key alone. */
  sliceBounds:
    "select count(*) as n, max(event_id) as last from (select event_id from consumer_inbox where consumer = ? and event_id > ? and event_id < ? order by event_id limit ?) slice",
  /**
   * The delete of a slice so bounded: a range of the key. (`event_id in (<the slice's select>)` made
   * PostgreSQL hash-join the slice against a scan of the consumer's rows on a small table.)
   */
  deleteRange: "delete from consumer_inbox where consumer = ? and event_id > ? and event_id <= ?",
} as const;

/** Whether InboxPrune may forget `s`'s inbox rows: a projection that says it is right without them, never a process manager. */
export const prunesInbox = (s: Subscriber): boolean => !!s.apply && !s.react && s.idempotentWithoutInbox === true;

/** Options of an {@link InboxPrune}. */
export interface InboxPruneOptions {
  db: Database;
  /** The SQLite write worker, which deletes each slice; absent: each is deleted on the main connection. */
  writer?: ConsumerBatchWriter | undefined;
  /** Every subscriber of the process: only those {@link prunesInbox} says yes to lose rows. */
  subscribers: readonly Subscriber[];
  /** Rows of events made longer ago than this (ms, by their UUIDv7's time) go. */
  horizonMs: number;
  /**
   * Whether this instance prunes `consumer` now: the holder of its lease, where several instances share
   * the database (two that prune the same rows at once only delete them once; this spares the work).
   */
  runsHere?: (consumer: string) => boolean;
  /** Rows per statement. */
  slice?: number;
  /** Between slices (ms; 0: a turn of the event loop only). */
  pauseMs?: number;
}

/** What one pass did. */
export interface InboxPruneResult {
  /** Rows deleted, by consumer (only those pruned here); through the worker, as its slices' reads counted them. */
  deleted: Record<string, number>;
  /** Slices deleted (one statement each; the look that finds nothing more is not counted). */
  slices: number;
  /** Wall time of the pass, pauses included (ms). */
  ms: number;
}

/** Totals since the start, for /metrics. */
export interface InboxPruneStats {
  passes: number;
  /** Rows deleted, by consumer. */
  deleted: Map<string, number>;
  /** Wall time of the latest pass (ms). */
  lastPassMs: number;
}

/** Prunes the projections' inbox rows older than the horizon. One pass at a time. */
export class InboxPrune {
  /** The consumers whose rows may go, in the subscribers' order. */
  readonly consumers: readonly string[];
  readonly stats: InboxPruneStats = { passes: 0, deleted: new Map(), lastPassMs: 0 };
  readonly #o: InboxPruneOptions & { slice: number; pauseMs: number };
  #running: Promise<InboxPruneResult> | undefined;
  #stopped = false;

  constructor(opts: InboxPruneOptions) {
    if (!(opts.horizonMs > 0)) throw new Error(`the inbox horizon must be positive, not ${opts.horizonMs} ms`);
    this.#o = { slice: INBOX_PRUNE_SLICE, pauseMs: INBOX_PRUNE_PAUSE_MS, ...opts };
    this.consumers = opts.subscribers.filter(prunesInbox).map((s) => s.name);
    for (const c of this.consumers) this.stats.deleted.set(c, 0);
  }

  /** One pass as of `now` (ms); a call while one runs gets that one's result. */
  run(now = Date.now()): Promise<InboxPruneResult> {
    return (this.#running ??= this.#pass(now).finally(() => (this.#running = undefined)));
  }

  /** Ends the pass in progress after its slice and waits for it; no pass runs after. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running?.catch(() => undefined);
  }

  async #pass(now: number): Promise<InboxPruneResult> {
    const started = performance.now();
    const { slice, runsHere } = this.#o;
    const before = uuidv7Floor(now - this.#o.horizonMs);
    const result: InboxPruneResult = { deleted: {}, slices: 0, ms: 0 };
    const here = (c: string) => !this.#stopped && (runsHere?.(c) ?? true);
    try {
      for (const consumer of this.consumers) {
        if (!here(consumer)) continue;
        result.deleted[consumer] = 0;
        for (let after = ""; ; ) {
          const { n, last } = await this.#deleteSlice(consumer, after, before);
          if (n === 0) break;
          result.slices++;
          result.deleted[consumer] += n;
          this.stats.deleted.set(consumer, (this.stats.deleted.get(consumer) ?? 0) + n);
          if (n < slice) break;
          after = last;
          await (this.#o.pauseMs > 0 ? sleep(this.#o.pauseMs) : turn());
          // Stopping, or the consumer's lease gone to another instance (which prunes it from then on).
          if (!here(consumer)) break;
        }
      }
    } finally {
      result.ms = performance.now() - started;
      this.stats.passes++;
      this.stats.lastPassMs = result.ms;
    }
    return result;
  }

  /**
   * Deletes `consumer`'s next slice of ids after `after` and before `before`: how many the read bounding it
   * found, and its last id. (A row of an old event inserted into that range meanwhile — a consumer far
   * behind — goes with it, uncounted.)
   */
  async #deleteSlice(consumer: string, after: string, before: string): Promise<{ n: number; last: string }> {
    const { db, writer, slice } = this.#o;
    const b = await db.read<{ n: number | string; last: string | null }>(INBOX_PRUNE_SQL.sliceBounds, [consumer, after, before, slice], "get");
    const n = Number(b.n);
    if (n === 0 || b.last === null) return { n: 0, last: after };
    const range = { sql: INBOX_PRUNE_SQL.deleteRange, params: [consumer, after, b.last] };
    if (writer) await writer.applyConsumerBatch({ before: [range], inbox: [], events: [] });
    else await db.execute(range.sql, range.params, "run");
    return { n, last: b.last };
  }
}
