/** The SQL of one group commit: many aggregates' snapshots, events, outbox rows and keys in one transaction. */
import type { AbstractSqlConnection } from "@mikro-orm/knex";
import type { Transaction } from "@mikro-orm/core";
import type { OutboxRow } from "./entities.js";
import { boundExecutor } from "./database.js";
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
}

/** Checks the batch's fences inside its transaction (before any write); throws when one has moved. */
export type FenceCheck = (exec: <T = unknown[]>(sql: string, params: unknown[], method: "all" | "run") => Promise<T>, fences: { partition: number; epoch: number }[]) => Promise<void>;

/** A stale writer: the stored version was not the one the writer started from. */
export class StaleWriteError extends Error {
  override readonly name = "StaleWriteError";
}

const CHUNK = 200;

function chunks<T>(items: T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function values(rows: number, cols: number): string {
  const one = `(${new Array(cols).fill("?").join(",")})`;
  return new Array(rows).fill(one).join(",");
}

/** Runs one statement inside the batch's transaction. */
type Exec = <T = unknown[]>(sql: string, params: unknown[], method: "all" | "run") => Promise<T>;

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

/** Columns of an outbox insert (the body is the 8th, the partition the 9th). */
const OUTBOX_COLS = 9;

/** Most outbox rows deleted by one statement. */
const DELETE_CHUNK = 500;

/**
 * Writes a batch inside `trx` and deletes the outbox rows `published` names (the relay's acks, which
 * ride along instead of taking a transaction of their own). Returns the outbox rows it inserted, with
 * their `seq`, in commit order: the relay publishes them from memory. Throws StaleWriteError when any
 * snapshot's optimistic check fails.
 */
export async function writeBatch(conn: AbstractSqlConnection, trx: Transaction, batch: AggregateWrite[], published: readonly number[] = [], fenceCheck?: FenceCheck): Promise<OutboxRow[]> {
  const exec = await executorOf(conn, trx);
  if (fenceCheck && batch.length > 0) await fenceCheck(exec, batch.flatMap((w) => (w.fence ? [w.fence] : [])));
  for (let i = 0; i < published.length; i += DELETE_CHUNK) {
    const part = published.slice(i, i + DELETE_CHUNK);
    await exec(`delete from nerve_outbox where seq in (${part.map(() => "?").join(",")})`, part, "run");
  }
  // Snapshots: an upsert whose update only happens when the stored version is the writer's base.
  // A new aggregate (base 0) that already exists fails the same check: version is never 0.
  for (const part of chunks(batch)) {
    const params: unknown[] = [];
    for (const w of part) params.push(w.aggregateType, w.aggregateId, w.version, w.baseVersion, JSON.stringify(w.state), w.now);
    const rows = await exec<unknown[]>(
      `insert into nerve_snapshots (aggregate_type, aggregate_id, version, base_version, state, updated_on) values ${values(part.length, 6)}
       on conflict (aggregate_type, aggregate_id) do update set version = excluded.version, base_version = excluded.base_version,
       state = excluded.state, updated_on = excluded.updated_on where nerve_snapshots.version = excluded.base_version
       returning aggregate_id`,
      params,
      "all",
    );
    if (rows.length !== part.length) throw new StaleWriteError(`${part.length - rows.length} stale snapshot write(s)`);
  }
  const events = batch.flatMap((w) => w.events.map((e) => ({ w, e })));
  const outbox: OutboxRow[] = [];
  for (const part of chunks(events)) {
    const ev: unknown[] = [];
    const ob: unknown[] = [];
    for (const { w, e } of part) {
      ev.push(e.event_id, e.event_type, e.event_version, e.occurred_on, w.aggregateType, w.aggregateId, e.aggregate_version, e.correlation_id, e.causation_id, JSON.stringify(e.payload));
      // The partition comes from the id (what the relays filter on), not from the fence, which a write may lack.
      ob.push(e.event_id, w.aggregateType, w.aggregateId, e.aggregate_version, e.subject, e.event_type, e.event_version, Buffer.from(e.body.buffer, e.body.byteOffset, e.body.byteLength), partitionOf(w.aggregateId));
    }
    await exec(
      `insert into nerve_events (event_id, event_type, event_version, occurred_on, aggregate_type, aggregate_id, aggregate_version, correlation_id, causation_id, payload) values ${values(part.length, 10)}`,
      ev,
      "run",
    );
    // RETURNING promises no order, so the seqs are matched to the rows by event_id.
    const seqs = await exec<{ seq: number | string; event_id: string }[]>(
      `insert into nerve_outbox (event_id, aggregate_type, aggregate_id, aggregate_version, subject, event_type, event_version, body, partition_no) values ${values(part.length, OUTBOX_COLS)} returning seq, event_id`,
      ob,
      "all",
    );
    const seqOf = new Map(seqs.map((r) => [r.event_id, Number(r.seq)]));
    for (let i = 0; i < part.length; i++) {
      const { w, e } = part[i]!;
      outbox.push({
        seq: seqOf.get(e.event_id)!,
        event_id: e.event_id,
        aggregate_type: w.aggregateType,
        aggregate_id: w.aggregateId,
        aggregate_version: e.aggregate_version,
        subject: e.subject,
        event_type: e.event_type,
        event_version: e.event_version,
        body: ob[i * OUTBOX_COLS + 7] as Buffer,
        partition_no: ob[i * OUTBOX_COLS + 8] as number,
      });
    }
  }
  const keyed = batch.filter((w) => w.idempotency);
  for (const part of chunks(keyed)) {
    const params: unknown[] = [];
    for (const w of part) params.push(w.aggregateType, w.aggregateId, w.idempotency!.key, w.idempotency!.fingerprint, JSON.stringify(w.idempotency!.reply), w.now);
    await exec(
      `insert into nerve_idempotency (aggregate_type, aggregate_id, key, fingerprint, reply, created_on) values ${values(part.length, 6)}`,
      params,
      "run",
    );
  }
  for (const w of batch) for (const op of w.extra ?? []) await exec(op.sql, op.params, "run");
  return outbox.sort((a, b) => a.seq - b.seq);
}
