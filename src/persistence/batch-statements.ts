/**
 * The statements of one group commit, whoever runs them: MikroORM's connection on the main thread, or
 * the SQLite write worker's prepared statements. It imports nothing, so the worker loads only this.
 */
import type { AggregateWrite, EventWrite, FenceCheck } from "./commit-batch.js";

/** Runs one statement inside the batch's transaction. */
export type Exec = <T = unknown[]>(sql: string, params: unknown[], method: "all" | "run") => Promise<T>;

/** A stale writer: the stored version was not the one the writer started from. */
export class StaleWriteError extends Error {
  override readonly name = "StaleWriteError";
}

/** One event of an {@link EncodedWrite}: the payload already JSON. */
export type EncodedEvent = Omit<EventWrite, "payload"> & { payload: string };

/**
 * An {@link AggregateWrite} with its JSON columns already encoded: strings cross to a worker thread for
 * a copy, where objects would cost a structured clone and then the same JSON.stringify over there.
 */
export type EncodedWrite = Omit<AggregateWrite, "state" | "events" | "idempotency" | "fence"> & {
  state: string;
  events: EncodedEvent[];
  idempotency?: { key: string; fingerprint: string; reply: string } | undefined;
  /** The aggregate's partition (what the relays filter on), worked out where the rest of the service does. */
  partition: number;
};

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

/** The outbox's columns a group commit writes, but its seq. */
const OUTBOX_COLUMNS = "event_id, aggregate_type, aggregate_id, aggregate_version, subject, event_type, event_version, body, partition_no, traceparent, tracestate";

/** Most outbox rows deleted by one statement. */
const DELETE_CHUNK = 500;

/** The bytes of an event body as the drivers bind them (a view, not a copy). */
export function bodyOf(body: Uint8Array): Buffer {
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/**
 * SQLite's write engine, the one connection that inserts outbox rows while it runs (one-statement.ts says
 * why): it numbers the outbox rows itself from `nextSeq`, and the snapshot upsert's check counts the rows it
 * changed (`changes()`), instead of each statement returning a row per write (seq and event_id, matched by
 * a Map; aggregate_id) — 1–2 µs of CPU a command at 128 writes a commit (`npm run bench:storage`).
 */
export interface OwnNumbering {
  nextSeq: number;
}

/**
 * Writes a batch with `exec` (inside the caller's transaction) and deletes the outbox rows `published`
 * names (the relay's acks, which ride along instead of taking a transaction of their own). Returns the
 * outbox seq of every event, in the batch's order of events. Throws StaleWriteError when any snapshot's
 * optimistic check fails.
 */
export async function writeStatements(
  exec: Exec,
  batch: readonly EncodedWrite[],
  published: readonly number[] = [],
  fences?: { check: FenceCheck; list: { partition: number; epoch: number }[] },
  transaction?: { xid?: string },
  numbered?: OwnNumbering,
): Promise<number[]> {
  if (fences && batch.length > 0) await fences.check(exec, fences.list);
  for (let i = 0; i < published.length; i += DELETE_CHUNK) {
    const part = published.slice(i, i + DELETE_CHUNK);
    await exec(`delete from nerve_outbox where seq in (${part.map(() => "?").join(",")})`, part, "run");
  }
  // Snapshots: an upsert whose update only happens when the stored version is the writer's base.
  // A new aggregate (base 0) that already exists fails the same check: version is never 0.
  // `transaction` (PostgreSQL) is told the transaction's id by the first upsert's RETURNING: asked after
  // when a COMMIT's answer is lost (commit-outcome.ts), at no round trip of its own.
  let askXid = transaction !== undefined;
  for (const part of chunks(batch as EncodedWrite[])) {
    const params: unknown[] = [];
    for (const w of part) params.push(w.aggregateType, w.aggregateId, w.version, w.baseVersion, w.state, w.now);
    const upsert = `insert into nerve_snapshots (aggregate_type, aggregate_id, version, base_version, state, updated_on) values ${values(part.length, 6)}
       on conflict (aggregate_type, aggregate_id) do update set version = excluded.version, base_version = excluded.base_version,
       state = excluded.state, updated_on = excluded.updated_on where nerve_snapshots.version = excluded.base_version`;
    if (numbered) {
      // Rows inserted or updated; one whose stored version was not its base is neither.
      await exec(upsert, params, "run");
      const n = (await exec<{ n: number }[]>("select changes() as n", [], "all"))[0]?.n ?? 0;
      if (n !== part.length) throw new StaleWriteError(`${part.length - n} stale snapshot write(s)`);
      continue;
    }
    const rows = await exec<{ xid?: string | number }[]>(`${upsert}\n       returning aggregate_id${askXid ? ", txid_current() as xid" : ""}`, params, "all");
    if (rows.length !== part.length) throw new StaleWriteError(`${part.length - rows.length} stale snapshot write(s)`);
    if (askXid && rows[0]?.xid !== undefined) {
      transaction!.xid = String(rows[0].xid);
      askXid = false;
    }
  }
  const events = batch.flatMap((w) => w.events.map((e) => ({ w, e })));
  const seqs: number[] = [];
  for (const part of chunks(events)) {
    const ev: unknown[] = [];
    const ob: unknown[] = [];
    for (const { w, e } of part) {
      ev.push(e.event_id, e.event_type, e.event_version, e.occurred_on, w.aggregateType, w.aggregateId, e.aggregate_version, e.correlation_id, e.causation_id, e.payload);
      if (numbered) {
        seqs.push(numbered.nextSeq);
        ob.push(numbered.nextSeq++);
      }
      ob.push(e.event_id, w.aggregateType, w.aggregateId, e.aggregate_version, e.subject, e.event_type, e.event_version, bodyOf(e.body), w.partition, w.traceparent ?? null, w.tracestate ?? null);
    }
    await exec(
      `insert into nerve_events (event_id, event_type, event_version, occurred_on, aggregate_type, aggregate_id, aggregate_version, correlation_id, causation_id, payload) values ${values(part.length, 10)}`,
      ev,
      "run",
    );
    if (numbered) {
      await exec(`insert into nerve_outbox (seq, ${OUTBOX_COLUMNS}) values ${values(part.length, 12)}`, ob, "run");
      continue;
    }
    // RETURNING promises no order, so the seqs are matched to the rows by event_id.
    const returned = await exec<{ seq: number | string; event_id: string }[]>(
      `insert into nerve_outbox (${OUTBOX_COLUMNS}) values ${values(part.length, 11)} returning seq, event_id`,
      ob,
      "all",
    );
    const seqOf = new Map(returned.map((r) => [r.event_id, Number(r.seq)]));
    for (const { e } of part) seqs.push(seqOf.get(e.event_id)!);
  }
  const keyed = batch.filter((w) => w.idempotency);
  for (const part of chunks(keyed)) {
    const params: unknown[] = [];
    for (const w of part) params.push(w.aggregateType, w.aggregateId, w.idempotency!.key, w.idempotency!.fingerprint, w.idempotency!.reply, w.now);
    await exec(
      `insert into nerve_idempotency (aggregate_type, aggregate_id, key, fingerprint, reply, created_on) values ${values(part.length, 6)}`,
      params,
      "run",
    );
  }
  for (const w of batch) for (const op of w.extra ?? []) await exec(op.sql, op.params, "run");
  return seqs;
}
