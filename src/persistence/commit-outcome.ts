/**
 * The outcome of a PostgreSQL group commit whose COMMIT got no answer (the connection cut during it, a
 * failover): it may have committed or not. Asked on another connection, by the transaction's id and the
 * batch's own rows, so that a batch that committed is answered as committed — its rows handed to the
 * relay — and one that did not is failed as before (the SQLite write worker does the same for a batch
 * its dead thread left behind).
 */
import type { AggregateWrite } from "./commit-batch.js";
import type { Database } from "./database.js";
import type { OutboxRow } from "./entities.js";

/** A group commit whose COMMIT was sent and not answered. */
export interface InDoubtCommit {
  /** The transaction's id (txid_current(), returned by its first snapshot upsert). */
  xid: string;
  writes: AggregateWrite[];
  /** The outbox rows it inserted, in commit order. */
  rows: OutboxRow[];
}

/** What is known of an in-doubt commit: committed (with those of its rows still in the outbox), not committed, or not yet (undefined). */
export type CommitOutcome = { committed: true; pending: OutboxRow[] } | { committed: false } | undefined;

/** Refuses writes whose commit may or may not have happened: the database could not say in time. A retry can help. */
export class CommitOutcomeUnknown extends Error {
  override readonly name = "CommitOutcomeUnknown";
}

/** Longest pause between two questions while the outcome is unknown. */
const MAX_PAUSE_MS = 1000;

/**
 * Asks until the outcome is known or `waitMs` has passed (the database out of reach, the commit still under
 * way); undefined when it is still unknown then.
 */
export async function settleCommit(db: Database, doubt: InDoubtCommit, waitMs: number): Promise<CommitOutcome> {
  const until = performance.now() + waitMs;
  for (let pause = 50; ; pause = Math.min(pause * 2, MAX_PAUSE_MS)) {
    const outcome = await askOutcome(db, doubt).catch(() => undefined);
    if (outcome) return outcome;
    const left = until - performance.now();
    if (left <= 0) return undefined;
    await new Promise((r) => setTimeout(r, Math.min(pause, left)));
  }
}

/**
 * Asks once; throws when the database cannot be asked. The transaction's status comes first: in progress,
 * or committed but not yet visible to others (its backend still finishing, waiting for a synchronous
 * standby, say), is not known yet; aborted did not commit. Committed and visible counts only when the
 * batch's rows are there too: after a failover to a standby the commit never reached, its id may belong
 * to another transaction. An id the server does not know (too old, or from before a failover) leaves
 * the rows to decide alone.
 */
export async function askOutcome(db: Database, doubt: InDoubtCommit): Promise<CommitOutcome> {
  const status = await statusOf(db, doubt.xid);
  if (status === "aborted") return { committed: false };
  if (status === "in progress") return undefined;
  const stored = await committedRows(db, doubt.writes);
  if (stored === false) return { committed: false };
  if (stored === undefined && status !== "committed") return { committed: false };
  return { committed: true, pending: await stillPending(db, doubt.rows) };
}

/** `txid_status`, with committed-but-invisible as in progress; undefined for an id the server does not know. */
async function statusOf(db: Database, xid: string): Promise<"committed" | "aborted" | "in progress" | undefined> {
  try {
    const row = await db.execute<{ status: string | null; visible: boolean }>(
      "select txid_status(?) as status, txid_visible_in_snapshot(?, txid_current_snapshot()) as visible",
      [xid, xid],
      "get",
    );
    if (row.status === "committed") return row.visible ? "committed" : "in progress";
    if (row.status === "aborted" || row.status === "in progress") return row.status;
    return undefined;
  } catch (err) {
    // 22023: "transaction ID … is in the future": another server's id (a failover) — the rows decide.
    if ((err as { code?: unknown }).code === "22023") return undefined;
    throw err;
  }
}

/**
 * Whether the batch's rows are stored (it commits whole or not at all, so one event, or else one
 * idempotency key, says); undefined when it has neither.
 */
async function committedRows(db: Database, writes: readonly AggregateWrite[]): Promise<boolean | undefined> {
  const event = writes.find((w) => w.events.length > 0)?.events[0];
  if (event) return (await db.execute("select 1 as x from nerve_events where event_id = ?", [event.event_id], "get")) !== undefined;
  const keyed = writes.find((w) => w.idempotency);
  if (!keyed) return undefined;
  const row = await db.execute("select 1 as x from nerve_idempotency where aggregate_type = ? and aggregate_id = ? and key = ?", [keyed.aggregateType, keyed.aggregateId, keyed.idempotency!.key], "get");
  return row !== undefined;
}

/** Those of `rows` still in the outbox (a relay's scan may have published and deleted some meanwhile). */
async function stillPending(db: Database, rows: readonly OutboxRow[]): Promise<OutboxRow[]> {
  const left = new Set<number>();
  for (let i = 0; i < rows.length; i += 500) {
    const part = rows.slice(i, i + 500).map((r) => Number(r.seq));
    const found = await db.execute<{ seq: number | string }[]>(`select seq from nerve_outbox where seq in (${part.map(() => "?").join(",")})`, part, "all");
    for (const r of found) left.add(Number(r.seq));
  }
  return rows.filter((r) => left.has(Number(r.seq)));
}
