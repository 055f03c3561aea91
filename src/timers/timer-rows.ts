/** The statements and conditions on nerve_timers: a row kept in step with its aggregate, and the polls' reads. */
import { partitionOf } from "../cluster/partition.js";
import { partitionClause, type SqlOp, type TimerRow } from "../persistence/index.js";
import { timerKindName, type TimerKind } from "./timer-kind.js";

/** The statement that keeps an aggregate's timer row in step with its state (same transaction). */
export function timerOp(k: Pick<TimerKind, "aggregateType" | "kind">, aggregateId: string, due: string | null): SqlOp {
  return due === null
    ? { sql: "delete from nerve_timers where aggregate_type = ? and aggregate_id = ? and kind = ?", params: [k.aggregateType, aggregateId, k.kind] }
    : {
        // The partition is set on update too: it fills in rows written before the column existed.
        sql: "insert into nerve_timers (aggregate_type, aggregate_id, kind, due_at, partition_no) values (?, ?, ?, ?, ?) on conflict (aggregate_type, aggregate_id, kind) do update set due_at = excluded.due_at, partition_no = excluded.partition_no",
        params: [k.aggregateType, aggregateId, k.kind, due, partitionOf(aggregateId)],
      };
}

/**
 * After a timer fired: its row follows the state read since, but only while the row is still the one
 * that fired (same due time). A command may have committed between the fire and that read, or before
 * this statement — re-granting an access that had just expired writes its new deadline in its own
 * transaction — and a follow-up from the older state must not delete or move that deadline: the
 * re-granted access would then never expire. The fire's own commit, when it had events, already wrote
 * the row (due time changed or row gone), so then this changes nothing either.
 */
export function timerFollowUp(k: Pick<TimerKind, "aggregateType" | "kind">, fired: Pick<TimerRow, "aggregate_id" | "due_at">, due: string | null): SqlOp {
  const where = "aggregate_type = ? and aggregate_id = ? and kind = ? and due_at = ?";
  const key = [k.aggregateType, fired.aggregate_id, k.kind, fired.due_at];
  return due === null ? { sql: `delete from nerve_timers where ${where}`, params: key } : { sql: `update nerve_timers set due_at = ? where ${where}`, params: [due, ...key] };
}

/** A `where` with its values, bound in order. */
export interface Clause {
  sql: string;
  params: unknown[];
}

/**
 * The rows of `kinds`, by {@link timerKindName} (`expire` of an Order is not `expire` of an AccessRecord),
 * bound as values, never written into the SQL text. One expression of both columns on purpose: written as
 * `aggregate_type = ? and kind = ?` pairs, SQLite searched the primary key by aggregate type and sorted
 * every row of the type instead of reading the due-time index (83 ms instead of 3 ms a poll, 200,000 timers).
 */
export function kindsClause(kinds: readonly TimerKind[]): Clause {
  if (kinds.length === 0) return { sql: "1 = 0", params: [] };
  return { sql: `(aggregate_type || '/' || kind) in (${kinds.map(() => "?").join(", ")})`, params: kinds.map(timerKindName) };
}

/** The due timers (as of `now`) of `partitions` (every one when undefined), as a `where`; null for none. */
export function dueScope(partitions: readonly number[] | undefined, now: string): Clause | null {
  const only = partitionClause(partitions);
  if (only === null) return null;
  return only ? { sql: `${only} and due_at <= ?`, params: [...partitions!, now] } : { sql: "due_at <= ?", params: [now] };
}
