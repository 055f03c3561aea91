/** The SQL of one group commit: many aggregates' snapshots, events, outbox rows and keys in one transaction. */
import type { AbstractSqlConnection } from "@mikro-orm/knex";
import type { Transaction } from "@mikro-orm/core";
import type { OutboxRow } from "./entities.js";
import { boundExecutor } from "./database.js";
import { bodyOf, writeStatements, type EncodedEvent, type EncodedWrite, type Exec } from "./batch-statements.js";
import { partitionOf } from "../cluster/partition.js";

/** A SQL statement with positional parameters. */
export interface SqlOp {
  sql: string;
  params: unknown[];
}

/** One stored event as the writer receives it: envelope columns plus the encoded outbox body. */
export interface EventWrite {
  event_id: string;
  event_type: string;
  event_version: number;
  occurred_on: string;
  aggregate_version: number;
  correlation_id: string;
  causation_id: string | null;
  payload: unknown;
  subject: string;
  body: Uint8Array;
}

/** Everything one command changes, written atomically with the others of its batch. */
export interface AggregateWrite {
  aggregateType: string;
  aggregateId: string;
  /** The version the actor started from (0 when the aggregate is new). */
  baseVersion: number;
  /** The version after this write. */
  version: number;
  state: unknown;
  now: string;
  events: EventWrite[];
  idempotency?: { key: string; fingerprint: string; reply: unknown } | undefined;
  /** Further statements of the same transaction (an e-mail index, say). */
  extra?: SqlOp[] | undefined;
  /** The partition's fencing token the command was decided under; checked first when commits are fenced. */
  fence?: { partition: number; epoch: number } | undefined;
  /** The command's W3C trace context, stored with its outbox rows for the events' headers. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** Checks the batch's fences inside its transaction (before any write); throws when one has moved. */
export type FenceCheck = (exec: Exec, fences: { partition: number; epoch: number }[]) => Promise<void>;

export { StaleWriteError } from "./batch-statements.js";

interface Sqlite3Handle {
  all(sql: string, params: unknown[], cb: (err: Error | null, rows: unknown[]) => void): void;
  run(sql: string, params: unknown[], cb: (err: Error | null) => void): void;
}

/**
 * The statement runner of a transaction. MikroORM manages the transaction (BEGIN/COMMIT on its
 * connection); on SQLite the statements themselves go to the driver's handle of that same
 * connection with bound parameters, because MikroORM inlines every parameter into the SQL text —
 * hundreds of kilobytes of escaped text per batch on the hottest path of the service.
 */
async function executorOf(conn: AbstractSqlConnection, trx: Transaction): Promise<Exec> {
  const client = (trx as unknown as { client?: { acquireConnection?: () => Promise<unknown>; dialect?: string } }).client;
  if (conn.getPlatform().constructor.name === "SqlitePlatform" && client?.acquireConnection) {
    const handle = (await client.acquireConnection()) as Sqlite3Handle;
    if (typeof handle?.all === "function" && typeof handle.run === "function") {
      return (sql, params, method) =>
        new Promise((resolve, reject) => {
          if (method === "all") handle.all(sql, params, (err, rows) => (err ? reject(err) : resolve(rows as never)));
          else handle.run(sql, params, (err) => (err ? reject(err) : resolve([] as never)));
        });
    }
  }
  const bound = boundExecutor(conn);
  return (sql, params, method) => bound(sql, params, method, trx);
}

/**
 * Writes a batch inside `trx` and deletes the outbox rows `published` names (the relay's acks, which
 * ride along instead of taking a transaction of their own). Returns the outbox rows it inserted, with
 * their `seq`, in commit order: the relay publishes them from memory. Throws StaleWriteError when any
 * snapshot's optimistic check fails.
 */
export async function writeBatch(conn: AbstractSqlConnection, trx: Transaction, batch: AggregateWrite[], published: readonly number[] = [], fenceCheck?: FenceCheck, transaction?: { xid?: string }): Promise<OutboxRow[]> {
  const exec = await executorOf(conn, trx);
  const fences = fenceCheck && { check: fenceCheck, list: batch.flatMap((w) => (w.fence ? [w.fence] : [])) };
  return outboxRows(batch, await writeStatements(exec, encodeWrites(batch), published, fences, transaction));
}

/**
 * Encodes a batch's JSON columns (and partitions) for {@link writeStatements}. The arrays are built by push,
 * packed whatever the batch (see group-commit.ts `writesOf`): `map` made some holey, and the functions they
 * reach were compiled again each time the other kind came by.
 */
export function encodeWrites(batch: readonly AggregateWrite[]): EncodedWrite[] {
  const out: EncodedWrite[] = [];
  for (const w of batch) out.push(encodeWrite(w));
  return out;
}

function encodeWrite(w: AggregateWrite): EncodedWrite {
  const events: EncodedEvent[] = [];
  for (const e of w.events) events.push(encodeEvent(e));
  return {
    aggregateType: w.aggregateType,
    aggregateId: w.aggregateId,
    baseVersion: w.baseVersion,
    version: w.version,
    state: JSON.stringify(w.state),
    now: w.now,
    events,
    idempotency: w.idempotency && { key: w.idempotency.key, fingerprint: w.idempotency.fingerprint, reply: JSON.stringify(w.idempotency.reply) },
    extra: w.extra,
    // The partition comes from the id (what the relays filter on), not from the fence, which a write may lack.
    partition: partitionOf(w.aggregateId),
    traceparent: w.traceparent,
    tracestate: w.tracestate,
  };
}

/**
 * An event with its payload as JSON: its fields written out, one object of a fixed shape (a spread that
 * overwrites `payload` cost a second backing store per event), and only the {@link EventWrite} fields
 * cross to the write worker.
 */
function encodeEvent(e: EventWrite): EncodedEvent {
  return {
    event_id: e.event_id,
    event_type: e.event_type,
    event_version: e.event_version,
    occurred_on: e.occurred_on,
    aggregate_version: e.aggregate_version,
    correlation_id: e.correlation_id,
    causation_id: e.causation_id,
    payload: JSON.stringify(e.payload),
    subject: e.subject,
    body: e.body,
  };
}

/** The outbox rows of a committed batch, given the seq of each of its events (in batch order), in commit order. */
export function outboxRows(batch: readonly AggregateWrite[], seqs: readonly number[]): OutboxRow[] {
  const rows: OutboxRow[] = [];
  let i = 0;
  for (const w of batch) {
    const partition = partitionOf(w.aggregateId);
    for (const e of w.events) {
      rows.push({
        seq: seqs[i++]!,
        event_id: e.event_id,
        aggregate_type: w.aggregateType,
        aggregate_id: w.aggregateId,
        aggregate_version: e.aggregate_version,
        subject: e.subject,
        event_type: e.event_type,
        event_version: e.event_version,
        body: bodyOf(e.body),
        partition_no: partition,
        traceparent: w.traceparent ?? null,
        tracestate: w.tracestate ?? null,
      });
    }
  }
  return rows.sort((a, b) => a.seq - b.seq);
}
