/** Reads of the write side: snapshots, idempotency keys, the event log, the e-mail index, the outbox. */
import type { Database } from "./database.js";
import type { EventRow, IdempotencyRow, OutboxRow, SnapshotRow } from "./entities.js";

/** A stored snapshot, decoded. */
export interface Snapshot<S = unknown> {
  version: number;
  state: S;
}

/** Typed reads over the write-side tables (raw SQL through MikroORM's connection: hot paths). */
export class Repository {
  constructor(private readonly db: Database) {}

  /** The snapshot of one aggregate, or undefined when it has never been written. */
  async loadSnapshot<S>(aggregateType: string, aggregateId: string): Promise<Snapshot<S> | undefined> {
    const row = await this.db.execute<any>(
      "select version, state from nerve_snapshots where aggregate_type = ? and aggregate_id = ?",
      [aggregateType, aggregateId],
      "get",
    );
    return row ? { version: Number(row.version), state: JSON.parse(row.state) as S } : undefined;
  }

  /** The remembered idempotency key of an aggregate, if any. */
  async findIdempotencyKey(aggregateType: string, aggregateId: string, key: string): Promise<Pick<IdempotencyRow, "fingerprint" | "reply"> | undefined> {
    return this.db.execute<any>(
      "select fingerprint, reply from nerve_idempotency where aggregate_type = ? and aggregate_id = ? and key = ?",
      [aggregateType, aggregateId, key],
      "get",
    );
  }

  /** Forgets keys older than `before`, keeping at least the newest `keep` per aggregate. */
  async pruneIdempotencyKeys(before: string, keep: number): Promise<void> {
    await this.db.execute(
      `delete from nerve_idempotency where created_on < ? and (aggregate_type, aggregate_id, key) not in (
         select aggregate_type, aggregate_id, key from (
           select aggregate_type, aggregate_id, key, row_number() over (partition by aggregate_type, aggregate_id order by created_on desc) as rn
           from nerve_idempotency) ranked where rn <= ?)`,
      [before, keep],
      "run",
    );
  }

  /** The user who holds an e-mail address (lower-cased), or null. */
  async emailOwner(email: string): Promise<string | null> {
    const row = await this.db.execute<any>("select user_id from user_emails where email = ?", [email], "get");
    return row?.user_id ?? null;
  }

  /** An aggregate's events in version order. */
  async history(aggregateType: string, aggregateId: string): Promise<EventRow[]> {
    return this.db.execute<EventRow[]>(
      "select * from nerve_events where aggregate_type = ? and aggregate_id = ? order by aggregate_version",
      [aggregateType, aggregateId],
      "all",
    );
  }

  /** The oldest unpublished outbox rows, in commit order. */
  async pendingOutbox(limit: number): Promise<OutboxRow[]> {
    return this.db.execute<OutboxRow[]>("select * from nerve_outbox order by seq limit ?", [limit], "all");
  }

  /** Number of unpublished outbox rows. */
  async outboxSize(): Promise<number> {
    const row = await this.db.execute<{ n: number }>("select count(*) as n from nerve_outbox", [], "get");
    return Number(row.n);
  }

  /** Marks outbox rows published by deleting them (the event log keeps the events). */
  async markPublished(seqs: number[]): Promise<void> {
    for (let i = 0; i < seqs.length; i += 500) {
      const part = seqs.slice(i, i + 500);
      await this.db.execute(`delete from nerve_outbox where seq in (${part.map(() => "?").join(",")})`, part, "run");
    }
  }
}
