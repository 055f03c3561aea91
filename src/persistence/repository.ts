/** Reads of the write side: snapshots, idempotency keys, the event log, the e-mail index, the outbox. */
import type { Database } from "./database.js";
import type { EventRow, IdempotencyRow, OutboxRow, SnapshotRow } from "./entities.js";
import { PARTITIONS, partitionOf } from "../cluster/partition.js";
import { INTEGER_COLUMN_MAX } from "./integer-column.js";

/** Outbox rows a read leaves out: those of `types`, and those of each (aggregate_type, aggregate_id) in `aggregates`. */
export interface OutboxExclusion {
  types: readonly string[];
  aggregates: ReadonlyArray<readonly [string, string]>;
}

/**
 * The `where` of a read limited to `partitions`: undefined for no limit (none given, or every
 * partition: the plain query, which also finds rows older than the column), null when the list is empty.
 */
export function partitionClause(partitions: readonly number[] | undefined): string | null | undefined {
  if (partitions === undefined || new Set(partitions).size >= PARTITIONS) return undefined;
  if (partitions.length === 0) return null;
  return `partition_no in (${partitions.map(() => "?").join(",")})`;
}

/** One event of an aggregate's history and the bytes of its row's text ({@link Repository.historySizes}). */
export interface EventSize {
  version: number;
  bytes: number;
}

/** A stored snapshot, decoded. */
export interface Snapshot<S = unknown> {
  version: number;
  state: S;
}

/**
 * Typed reads over the write-side tables (raw SQL: hot paths). The command path's reads (snapshots,
 * idempotency keys, the e-mail index) go to the database's read connection, never queued behind a write.
 */
export class Repository {
  constructor(private readonly db: Database) {}

  /** The snapshot of one aggregate, or undefined when it has never been written. */
  async loadSnapshot<S>(aggregateType: string, aggregateId: string): Promise<Snapshot<S> | undefined> {
    const row = await this.db.read<any>(
      "select version, state from nerve_snapshots where aggregate_type = ? and aggregate_id = ?",
      [aggregateType, aggregateId],
      "get",
    );
    return row ? { version: Number(row.version), state: JSON.parse(row.state) as S } : undefined;
  }

  /** The remembered idempotency key of an aggregate, if any. */
  async findIdempotencyKey(aggregateType: string, aggregateId: string, key: string): Promise<Pick<IdempotencyRow, "fingerprint" | "reply"> | undefined> {
    return this.db.read<any>(
      "select fingerprint, reply from nerve_idempotency where aggregate_type = ? and aggregate_id = ? and key = ?",
      [aggregateType, aggregateId, key],
      "get",
    );
  }

  /** The user who holds an e-mail address (lower-cased), or null. */
  async emailOwner(email: string): Promise<string | null> {
    const row = await this.db.read<any>("select user_id from user_emails where email = ?", [email], "get");
    return row?.user_id ?? null;
  }

  /** How many events an aggregate has, counted up to `atMost`: from the index on (type, id, version), no row read. */
  async historyLength(aggregateType: string, aggregateId: string, atMost: number): Promise<number> {
    const row = await this.db.query<{ n: number | string }>(
      "select count(*) as n from (select 1 from nerve_events where aggregate_type = ? and aggregate_id = ? limit ?) e",
      [aggregateType, aggregateId, atMost],
      "get",
    );
    return Number(row.n);
  }

  /**
   * An aggregate's events after version `after` (any past the column's range: none), in version order, at most `limit`: each version with the
   * bytes of its row's text (payload, ids, type, time), read without the text itself — octet_length
   * takes the length from SQLite's record header and PostgreSQL's TOAST pointer — so that a reader learns
   * how much the rows hold before it reads them.
   */
  async historySizes(aggregateType: string, aggregateId: string, after: number, limit: number): Promise<EventSize[]> {
    const rows = await this.db.query<{ v: number | string; n: number | string }[]>(
      "select aggregate_version as v, octet_length(payload) + octet_length(event_id) + octet_length(event_type) + octet_length(occurred_on) + octet_length(aggregate_type) + octet_length(aggregate_id) + octet_length(correlation_id) + coalesce(octet_length(causation_id), 0) as n" +
        " from nerve_events where aggregate_type = ? and aggregate_id = ? and aggregate_version > ? order by aggregate_version limit ?",
      [aggregateType, aggregateId, Math.min(after, INTEGER_COLUMN_MAX), limit],
    );
    return rows.map((r) => ({ version: Number(r.v), bytes: Number(r.n) }));
  }

  /** An aggregate's events in version order: those after version `after` (default: all; any past the column's range: none), at most `limit`. */
  async history(aggregateType: string, aggregateId: string, range: { after?: number; limit?: number } = {}): Promise<EventRow[]> {
    // A query for another service, as long as the aggregate's life: off the main thread on SQLite.
    return this.db.query<EventRow[]>(
      "select * from nerve_events where aggregate_type = ? and aggregate_id = ? and aggregate_version > ? order by aggregate_version limit ?",
      [aggregateType, aggregateId, Math.min(range.after ?? 0, INTEGER_COLUMN_MAX), range.limit ?? Number.MAX_SAFE_INTEGER],
    );
  }

  /**
   * The oldest unpublished outbox rows, in seq order — of `partitions` only, when given: with several
   * writers seq follows commit order only within a partition, so each relay reads just its own.
   */
  async pendingOutbox(limit: number, partitions?: readonly number[], exclude?: OutboxExclusion): Promise<OutboxRow[]> {
    const only = partitionClause(partitions);
    if (only === null) return [];
    const where: string[] = only ? [only] : [];
    const params: unknown[] = only ? [...partitions!] : [];
    // Rows the relay holds back (their stream failed, or refused their aggregate's row): never returned,
    // so that however many there are, a read returns the rows that can go out.
    if (exclude && exclude.types.length > 0) {
      where.push(`aggregate_type not in (${exclude.types.map(() => "?").join(",")})`);
      params.push(...exclude.types);
    }
    for (const [type, id] of exclude?.aggregates ?? []) {
      where.push("not (aggregate_type = ? and aggregate_id = ?)");
      params.push(type, id);
    }
    if (where.length === 0) return this.db.execute<OutboxRow[]>("select * from nerve_outbox order by seq limit ?", [limit], "all");
    return this.db.execute<OutboxRow[]>(`select * from nerve_outbox where ${where.join(" and ")} order by seq limit ?`, [...params, limit], "all");
  }

  /**
   * Number of unpublished outbox rows of `partitions` (all when not given), for a metric's scrape: on a
   * SQLite file counted on the query thread, so that a backlog of millions (JetStream away for long)
   * does not hold the event loop at every scrape.
   */
  async outboxPending(partitions?: readonly number[]): Promise<number> {
    return this.#countOutbox((sql, params) => this.db.query(sql, params, "get"), partitions);
  }

  /** Number of unpublished outbox rows (of `partitions` only, when given). */
  async outboxSize(partitions?: readonly number[]): Promise<number> {
    return this.#countOutbox((sql, params) => this.db.read(sql, params, "get"), partitions);
  }

  /**
   * When the oldest unpublished event of `partitions` (all when not given) occurred, in ms since the
   * epoch; undefined when there is none. The outbox row has no time of its own: its event's, from the
   * event log. Read as a query (on a SQLite file, off the main thread): for `nerve status` and a metric's scrape.
   */
  async outboxOldestAt(partitions?: readonly number[]): Promise<number | undefined> {
    const only = partitionClause(partitions);
    if (only === null) return undefined;
    const row = await this.db.query<{ at: unknown } | undefined>(
      `select e.occurred_on as at from nerve_outbox o join nerve_events e on e.event_id = o.event_id${only ? ` where o.${only}` : ""} order by o.seq limit 1`,
      only ? partitions! : [],
      "get",
    );
    return typeof row?.at === "string" ? Date.parse(row.at) : undefined;
  }

  /** Counts the outbox rows of `partitions` through `run`; none given, or every one, counts the whole table. */
  async #countOutbox(run: (sql: string, params: readonly unknown[]) => Promise<{ n: number | string }>, partitions: readonly number[] | undefined): Promise<number> {
    const only = partitionClause(partitions);
    if (only === null) return 0;
    const row = await run(`select count(*) as n from nerve_outbox${only ? ` where ${only}` : ""}`, only ? partitions! : []);
    return Number(row.n);
  }

  /**
   * Fills in `partition_no` on the rows of `table` written before the column existed, from their
   * aggregate ids; returns how many aggregates it did. The relay and the timers run it once, before
   * their first read of some partitions only; the index on the column makes the probe cheap when done.
   */
  async fillPartitions(table: "nerve_outbox" | "nerve_timers"): Promise<number> {
    let filled = 0;
    for (;;) {
      const rows = await this.db.execute<{ aggregate_id: string }[]>(`select distinct aggregate_id from ${table} where partition_no is null limit 500`, [], "all");
      if (rows.length === 0) return filled;
      const byPartition = new Map<number, string[]>();
      for (const { aggregate_id: id } of rows) {
        const p = partitionOf(id);
        byPartition.set(p, [...(byPartition.get(p) ?? []), id]);
      }
      for (const [p, ids] of byPartition) {
        await this.db.execute(`update ${table} set partition_no = ? where partition_no is null and aggregate_id in (${ids.map(() => "?").join(",")})`, [p, ...ids], "run");
      }
      filled += rows.length;
    }
  }

  /** Marks outbox rows published by deleting them (the event log keeps the events). */
  async markPublished(seqs: number[]): Promise<void> {
    for (let i = 0; i < seqs.length; i += 500) {
      const part = seqs.slice(i, i + 500);
      await this.db.execute(`delete from nerve_outbox where seq in (${part.map(() => "?").join(",")})`, part, "run");
    }
  }
}
