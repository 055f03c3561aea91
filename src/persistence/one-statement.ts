/**
 * A small group commit as one SQL statement, for the SQLite write worker. Each statement of a
 * transaction is a trip through libuv's thread pool and back (~60–90 µs on an idle 2-core VM), and a
 * lone command's transaction had six: `begin`, the published rows' delete, the snapshot upsert, the
 * event, the outbox row, `commit`. Here every row of the batch is one row of an `insert` into a TEMP
 * view whose INSTEAD OF triggers do the writes, so the whole group commit is one statement: SQLite
 * runs a statement outside a transaction as a transaction of its own, atomic, with the same fsync.
 *
 * The rules are those of {@link writeStatements}: the snapshot upsert applies only where the stored
 * version is the writer's base (else the trigger raises, the statement is rolled back whole, and the
 * worker reports a StaleWriteError), the event and its outbox row go in together, an idempotency key
 * is a plain insert, and a write's further statements (a timer, an e-mail's row) run as they are, each
 * SQL text through a trigger of its own made the first time it is seen ({@link ExtraKinds}); they run
 * right after their own write's rows rather than after the whole batch's, which no statement of ours
 * can tell apart. What differs: the outbox seqs are given, not taken from AUTOINCREMENT (a trigger
 * cannot return them) — the worker is the only connection that inserts outbox rows while it runs (the
 * main connection writes them only when there is no worker) and numbers them on from the table's own
 * high-water mark, read at start and again after any failed transaction.
 *
 * Like batch-statements.ts it imports nothing else: the worker thread loads it as it is.
 */
import { bodyOf, type EncodedWrite } from "./batch-statements.js";

/** The message of the trigger's abort when a snapshot's stored version is not the writer's base. */
export const STALE_ABORT = "nerve: stale snapshot write";

/** Columns of the view besides `kind`: as many as the widest row (an event with its outbox row). */
const COLUMNS = 16;

/** Row kinds of the view; a row of any other kind (0: padding) writes nothing. */
const DELETE = 1;
const SNAPSHOT = 2;
const EVENT = 3;
const KEY = 4;

const cols = Array.from({ length: COLUMNS }, (_, i) => `c${i + 1}`);

/**
 * The connection's TEMP view and triggers (per connection: nothing is added to the file's schema).
 * Trigger bodies name the main tables unqualified, as SQLite requires; nothing TEMP shadows them.
 */
export const ONE_STATEMENT_SETUP = `
create temp view nerve_write (kind, ${cols.join(", ")}) as select ${["null", ...cols.map(() => "null")].join(", ")} where 0;
create temp trigger nerve_write_delete instead of insert on nerve_write when new.kind = ${DELETE} begin
  delete from nerve_outbox where seq = new.c1;
end;
create temp trigger nerve_write_snapshot instead of insert on nerve_write when new.kind = ${SNAPSHOT} begin
  insert into nerve_snapshots (aggregate_type, aggregate_id, version, base_version, state, updated_on)
    values (new.c1, new.c2, new.c3, new.c4, new.c5, new.c6)
    on conflict (aggregate_type, aggregate_id) do update set version = excluded.version, base_version = excluded.base_version,
    state = excluded.state, updated_on = excluded.updated_on where nerve_snapshots.version = excluded.base_version;
  select raise(abort, '${STALE_ABORT}') where changes() = 0;
end;
create temp trigger nerve_write_event instead of insert on nerve_write when new.kind = ${EVENT} begin
  insert into nerve_events (event_id, event_type, event_version, occurred_on, aggregate_type, aggregate_id, aggregate_version, correlation_id, causation_id, payload)
    values (new.c1, new.c2, new.c3, new.c4, new.c5, new.c6, new.c7, new.c8, new.c9, new.c10);
  insert into nerve_outbox (seq, event_id, aggregate_type, aggregate_id, aggregate_version, subject, event_type, event_version, body, partition_no, traceparent, tracestate)
    values (new.c11, new.c1, new.c5, new.c6, new.c7, new.c12, new.c2, new.c3, new.c13, new.c14, new.c15, new.c16);
end;
create temp trigger nerve_write_key instead of insert on nerve_write when new.kind = ${KEY} begin
  insert into nerve_idempotency (aggregate_type, aggregate_id, key, fingerprint, reply, created_on) values (new.c1, new.c2, new.c3, new.c4, new.c5, new.c6);
end;`;

/** The next outbox seq: one past the highest ever given (AUTOINCREMENT's record) or held. */
export const NEXT_SEQ_SQL = `select max(coalesce((select seq from sqlite_sequence where name = 'nerve_outbox'), 0), coalesce((select max(seq) from nerve_outbox), 0)) + 1 as next`;

/**
 * Row counts a statement is prepared for: a batch's rows are padded up to the next, so a handful of
 * statements serve every small batch. A larger batch is not worth one statement (its trips through the
 * pool are few against its rows) and goes the usual way.
 */
const SIZES = [4, 8, 16, 32, 64];

/** Most rows a batch may have to be written as one statement. */
export const MAX_ONE_STATEMENT_ROWS = SIZES[SIZES.length - 1]!;

const texts = new Map(SIZES.map((n) => [n, `insert into nerve_write (kind, ${cols.join(", ")}) values ${new Array(n).fill(`(${new Array(COLUMNS + 1).fill("?").join(",")})`).join(",")}`]));

/** Row kinds of a write's further statements (`extra`: a timer, an e-mail's row) start here, one per SQL text. */
const FIRST_EXTRA_KIND = 16;

/** Most SQL texts of further statements one connection makes triggers for; the rest go the usual way. */
const MAX_EXTRA_KINDS = 64;

/**
 * The further statements (a write's `extra`) a connection has a trigger for, by SQL text: each runs as a
 * row of its own kind, its `?`s bound to the row's columns in order. Only a plain statement qualifies:
 * `?` placeholders only (no numbered or named ones), no string literal or comment that could hold a `?`,
 * at most as many parameters as the view has columns.
 */
export class ExtraKinds {
  readonly #kinds = new Map<string, number>();
  readonly #refused = new Set<string>();
  #nextKind = FIRST_EXTRA_KIND;

  /** The kind of `sql`'s rows, when a trigger for it exists. */
  kindOf(sql: string): number | undefined {
    return this.#kinds.get(sql);
  }

  /**
   * The `create temp trigger` statements the batch's further statements still need (run them, in order,
   * before {@link oneStatement}); each is then counted as made.
   */
  triggersFor(batch: readonly EncodedWrite[]): { sql: string; trigger: string }[] {
    const out: { sql: string; trigger: string }[] = [];
    for (const w of batch) {
      for (const op of w.extra ?? []) {
        if (this.#kinds.has(op.sql) || this.#refused.has(op.sql)) continue;
        const kind = this.#nextKind;
        const trigger = kind < FIRST_EXTRA_KIND + MAX_EXTRA_KINDS ? extraTrigger(op.sql, op.params.length, kind) : undefined;
        if (trigger) {
          this.#nextKind++;
          this.#kinds.set(op.sql, kind);
          out.push({ sql: op.sql, trigger });
        } else if (this.#refused.size < MAX_EXTRA_KINDS) this.#refused.add(op.sql);
      }
    }
    return out;
  }

  /** Forgets the trigger of `sql`, which could not be made: its statement goes the usual way. */
  forget(sql: string): void {
    this.#kinds.delete(sql);
    if (this.#refused.size < MAX_EXTRA_KINDS) this.#refused.add(sql);
  }
}

// The trigger that runs `sql` for each row of `kind`, its placeholders bound to new.c1, new.c2, …
function extraTrigger(sql: string, params: number, kind: number): string | undefined {
  if (/['"`[]|--|\/\*|\?\d|[:@$][A-Za-z_]|;/.test(sql)) return undefined;
  let n = 0;
  const body = sql.replace(/\?/g, () => `new.c${++n}`);
  if (n !== params || n > COLUMNS) return undefined;
  return `create temp trigger nerve_write_extra_${kind} instead of insert on nerve_write when new.kind = ${kind} begin ${body}; end`;
}

// The batch's rows in the view, or undefined when a write has a further statement without a trigger.
function rowsOf(batch: readonly EncodedWrite[], published: readonly number[], extras: ExtraKinds): number | undefined {
  let rows = published.length;
  for (const w of batch) {
    for (const op of w.extra ?? []) if (extras.kindOf(op.sql) === undefined) return undefined;
    rows += 1 + w.events.length + (w.idempotency ? 1 : 0) + (w.extra?.length ?? 0);
  }
  return rows;
}

/** Whether {@link oneStatement} takes the batch (with the triggers `extras` has). */
export function fitsOneStatement(batch: readonly EncodedWrite[], published: readonly number[], extras: ExtraKinds): boolean {
  const rows = rowsOf(batch, published, extras);
  return rows !== undefined && rows <= MAX_ONE_STATEMENT_ROWS;
}

/** One statement for a group commit, and the outbox seq of each of its events in batch order. */
export interface OneStatement {
  sql: string;
  params: unknown[];
  seqs: number[];
}

/**
 * The batch as one statement, its events numbered from `nextSeq`; undefined when it does not fit (a
 * further statement of a write without a trigger in `extras`, more than {@link MAX_ONE_STATEMENT_ROWS} rows).
 */
export function oneStatement(batch: readonly EncodedWrite[], published: readonly number[], nextSeq: number, extras: ExtraKinds): OneStatement | undefined {
  const rows = rowsOf(batch, published, extras);
  const size = rows === undefined ? undefined : SIZES.find((n) => n >= rows);
  if (rows === undefined || size === undefined) return undefined;
  const params: unknown[] = [];
  const row = (kind: number, values: unknown[]) => {
    params.push(kind, ...values);
    for (let i = values.length; i < COLUMNS; i++) params.push(null);
  };
  for (const seq of published) row(DELETE, [seq]);
  const seqs: number[] = [];
  let seq = nextSeq;
  for (const w of batch) {
    row(SNAPSHOT, [w.aggregateType, w.aggregateId, w.version, w.baseVersion, w.state, w.now]);
    for (const e of w.events) {
      seqs.push(seq);
      row(EVENT, [
        e.event_id, e.event_type, e.event_version, e.occurred_on, w.aggregateType, w.aggregateId, e.aggregate_version, e.correlation_id, e.causation_id, e.payload,
        seq++, e.subject, bodyOf(e.body), w.partition, w.traceparent ?? null, w.tracestate ?? null,
      ]);
    }
    if (w.idempotency) row(KEY, [w.aggregateType, w.aggregateId, w.idempotency.key, w.idempotency.fingerprint, w.idempotency.reply, w.now]);
    for (const op of w.extra ?? []) row(extras.kindOf(op.sql)!, op.params);
  }
  for (let i = rows; i < size; i++) row(0, []);
  return { sql: texts.get(size)!, params, seqs };
}
