/**
 * Forgetting idempotency keys: a key older than the retention is deleted unless it is among the newest
 * `keep` of its aggregate, and any key older than `maxAgeMs` (30 days) is deleted whatever its aggregate
 * holds (a process manager's redelivered event is caught by its own inbox first). It used to be one statement over the whole table every ten minutes (a window function
 * over every key) on the main connection, which better-sqlite3 runs on the main thread: with 200,000 keys
 * the event loop stood still 0.4 s when it deleted nothing and 21–30 s when it deleted 2,500, every commit
 * waiting meanwhile (`npm run bench:prune`). Now each pass reads, in chunks, only the keys that aged past
 * the retention since the last pass (all of them on a process's first), and deletes only for the
 * aggregates among them that hold more than `keep` keys — a slice of keys per statement, each in the write
 * worker's exclusive turn, a pause between chunks and a turn of the event loop between slices.
 *
 * The same keys go as with the whole-table statement, some later: an aggregate whose old keys were kept
 * (it had `keep` or fewer) and that then gains keys is looked at again when those age in, and then loses
 * every key beyond its newest `keep` that is older than the retention.
 *
 * And a key older than `maxAgeMs` goes whatever its aggregate holds: with `keep` alone, nearly every
 * aggregate (few have more than `keep` keys) kept every key, each with its reply, for ever — the table
 * grew with every keyed command. Those are found by created_on's index, oldest first, a slice a statement.
 */
import { setTimeout as sleep, setImmediate as turn } from "node:timers/promises";
import { exclusively, type ExclusiveWriter } from "./consumer-batch.js";
import type { Database } from "./database.js";

/** Keys read per chunk: a chunk's two reads (the keys, then their aggregates' counts) hold the main thread about 0.5 ms. */
export const PRUNE_CHUNK = 100;

/** The pause between chunks (ms). */
export const PRUNE_PAUSE_MS = 2;

/** Keys deleted per statement: a slice of an aggregate with 1,500 keys holds the main thread about 10 ms. */
export const DELETE_SLICE = 200;

/** How long any idempotency key is remembered at most: 30 days. */
export const IDEMPOTENCY_MAX_AGE_MS = 30 * 24 * 3600_000;

export interface IdempotencyPruneOptions {
  db: Database;
  /** The SQLite write worker beside the main connection, whose exclusive turn the deletes take. */
  writer?: ExclusiveWriter | undefined;
  /** How long a key is remembered at least (ms). */
  retentionMs: number;
  /** Keys every aggregate keeps, unless older than {@link maxAgeMs}. */
  keep: number;
  /** A key older than this goes whatever its aggregate holds (ms; default {@link IDEMPOTENCY_MAX_AGE_MS}). */
  maxAgeMs?: number;
  chunk?: number;
  /** Between chunks (ms; 0: a turn of the event loop only). */
  pauseMs?: number;
}

/** What one pass did. */
export interface PruneResult {
  /** Keys that aged past the retention since the last pass, read. */
  examined: number;
  /** Aggregates among theirs holding more than `keep` keys. */
  over: number;
  /** Keys deleted, of them `expired` for their age alone. */
  deleted: number;
  chunks: number;
  expired?: number;
}

/** Key by key position in (created_on, aggregate_type, aggregate_id, key) order: where a chunk ends. */
type Position = [string, string, string, string];

/** Prunes the idempotency keys, remembering how far it has looked. One pass at a time. */
export class IdempotencyPrune {
  readonly #o: Required<Omit<IdempotencyPruneOptions, "writer">> & { writer?: ExclusiveWriter | undefined };
  /** Keys created before this were looked at by an earlier pass. */
  #through: string | undefined;
  #running: Promise<PruneResult> | undefined;
  #stopped = false;

  constructor(opts: IdempotencyPruneOptions) {
    this.#o = { chunk: PRUNE_CHUNK, pauseMs: PRUNE_PAUSE_MS, maxAgeMs: IDEMPOTENCY_MAX_AGE_MS, ...opts };
  }

  /** One pass as of `now`; a call while one runs gets that one's result. */
  run(now = new Date()): Promise<PruneResult> {
    return (this.#running ??= this.#pass(now).finally(() => (this.#running = undefined)));
  }

  /** Ends the pass in progress after its chunk and waits for it; no pass runs after. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running?.catch(() => undefined);
  }

  async #pass(now: Date): Promise<PruneResult> {
    const result = await this.#beyondKeep(now);
    const expired = await this.#expired(now);
    return expired > 0 ? { ...result, deleted: result.deleted + expired, expired } : result;
  }

  // Every key older than maxAgeMs, oldest first by created_on's index, a slice a statement in the worker's turn.
  async #expired(now: Date): Promise<number> {
    const { db, writer } = this.#o;
    const before = new Date(now.getTime() - this.#o.maxAgeMs).toISOString();
    let deleted = 0;
    while (!this.#stopped) {
      const r = await exclusively(writer, () =>
        db.execute<{ affectedRows?: number; changes?: number }>(
          `delete from nerve_idempotency where (aggregate_type, aggregate_id, key) in (
             select aggregate_type, aggregate_id, key from nerve_idempotency where created_on < ? order by created_on limit ?)`,
          [before, DELETE_SLICE],
          "run",
        ),
      );
      const n = Number(r?.affectedRows ?? r?.changes ?? 0);
      deleted += n;
      if (n < DELETE_SLICE) break;
      await turn();
    }
    return deleted;
  }

  async #beyondKeep(now: Date): Promise<PruneResult> {
    const { db, writer, keep, chunk } = this.#o;
    const before = new Date(now.getTime() - this.#o.retentionMs).toISOString();
    const from = this.#through ?? "";
    const result: PruneResult = { examined: 0, over: 0, deleted: 0, chunks: 0 };
    if (this.#stopped) return result;
    let after: Position | undefined;
    while (!this.#stopped) {
      const rows = await db.read<{ created_on: string; aggregate_type: string; aggregate_id: string; key: string }[]>(
        `select created_on, aggregate_type, aggregate_id, key from nerve_idempotency
         where created_on >= ? and created_on < ?${after ? " and (created_on > ? or (aggregate_type, aggregate_id, key) > (?, ?, ?))" : ""}
         order by created_on, aggregate_type, aggregate_id, key limit ?`,
        // After a chunk: from its last key on. Its created_on bounds the index's range (a row value alone did
        // not, and each chunk read every key before it: 3 ms a chunk 95,000 keys in).
        [after ? after[0] : from, before, ...(after ?? []), chunk],
        "all",
      );
      if (rows.length === 0) {
        this.#through = before;
        break;
      }
      result.examined += rows.length;
      result.chunks++;
      const last = rows[rows.length - 1]!;
      after = [last.created_on, last.aggregate_type, last.aggregate_id, last.key];
      const aggregates = [...new Map(rows.map((r) => [`${r.aggregate_type}\u0000${r.aggregate_id}`, [r.aggregate_type, r.aggregate_id] as const])).values()];
      // The chunk's aggregates counted in one statement, the list padded to the chunk's size with its last
      // so that the statement's text, and so its prepared form, is the same every time.
      const padded = Array.from({ length: chunk }, (_, i) => aggregates[Math.min(i, aggregates.length - 1)]!);
      const over = (
        await db.read<{ aggregate_type: string; aggregate_id: string }[]>(
          `select aggregate_type, aggregate_id from nerve_idempotency where (aggregate_type, aggregate_id) in (values ${padded.map(() => "(?, ?)").join(", ")})
           group by aggregate_type, aggregate_id having count(*) > ?`,
          [...padded.flat(), keep],
          "all",
        )
      ).map((r) => [r.aggregate_type, r.aggregate_id] as const);
      result.over += over.length;
      for (const [type, id] of over) {
        // A slice at a time, each its own statement (and so transaction) in its own turn of the worker and
        // of the event loop: an aggregate far over `keep` never holds either for long.
        for (;;) {
          const r = await exclusively(writer, () =>
            db.execute<{ affectedRows?: number; changes?: number }>(
              `delete from nerve_idempotency where aggregate_type = ? and aggregate_id = ? and key in (
                 select key from nerve_idempotency where aggregate_type = ? and aggregate_id = ? and created_on < ? and key not in (
                   select key from nerve_idempotency where aggregate_type = ? and aggregate_id = ? order by created_on desc limit ?)
                 order by created_on limit ?)`,
              [type, id, type, id, before, type, id, keep, DELETE_SLICE],
              "run",
            ),
          );
          const n = Number(r?.affectedRows ?? r?.changes ?? 0);
          result.deleted += n;
          if (n < DELETE_SLICE) break;
          await turn();
        }
      }
      if (rows.length < chunk) {
        this.#through = before;
        break;
      }
      // Background work: a pause between chunks keeps a long pass (a process's first, over every old key)
      // to a small share of the main thread — about a fifth at 0.5 ms a chunk.
      await (this.#o.pauseMs > 0 ? sleep(this.#o.pauseMs) : turn());
    }
    return result;
  }
}
