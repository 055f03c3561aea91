/** Applies events to one subscriber exactly once per event_id, whatever the transport redelivers. */
import type { EnvelopeBase, EventType } from "../../contracts/index.js";
import { EventContexts, errors } from "../../contracts/index.js";
import type { Transaction } from "@mikro-orm/core";
import { MAX_WAITING_QUERIES, QueriesOverloaded, bindable, exclusively, type BatchLink, type BatchStatement, type ConsumerBatch, type ConsumerBatchWriter, type Database } from "../persistence/index.js";
import type { Subscriber, Tx } from "./subscriber.js";
import { SpanKind, activeTracer, endSpan, headersOf, startSpan, withCause, type Span, type TraceHeaders } from "../tracing/index.js";

// Bound on the bound parameters of one inbox insert (3 per row), far below SQLite's and PostgreSQL's limits.
const INBOX_ROWS_PER_STATEMENT = 500;

/** The inbox insert of `rows` rows (`returning` the ids not seen before), by row count: made once per count. */
const inboxInserts = new Map<number, string>();
function inboxInsertSql(rows: number): string {
  let sql = inboxInserts.get(rows);
  if (sql === undefined) {
    sql = `insert into consumer_inbox (consumer, event_id, handled_on) values ${new Array<string>(rows).fill("(?, ?, ?)").join(", ")} on conflict do nothing returning event_id`;
    inboxInserts.set(rows, sql);
  }
  return sql;
}

/** What became of one event. */
export type Outcome = "handled" | "duplicate" | "skipped";

/**
 * What became of a dead letter's event handled again: an {@link Outcome}, or `stale` — the read model can
 * no longer take it (Subscriber.shows said so), and nothing was committed.
 */
export type RetryOutcome = Outcome | "stale";

/** Thrown inside a retry's transaction to roll it back: the read model cannot take the event. */
class Stale extends Error {
  override readonly name = "Stale";
}

/** The database's bound statement runner (optionally inside a transaction) as a {@link Tx}. */
export function txOf(db: Database, trx?: unknown): Tx {
  return {
    dialect: db.dialect,
    execute: (sql, params = [], method = "all") => db.execute(sql, params, method, trx),
  };
}

/**
 * A {@link Tx} for a read model's queries: each read a {@link Database.query} (on SQLite, off the main
 * thread; on PostgreSQL, on the queries' own pool); a write is refused. A query refused, too many waiting,
 * or cut off by PostgreSQL's statement_timeout (57014), is `unavailable` (safe to retry).
 */
export function queryTxOf(db: Database): Tx {
  return {
    dialect: db.dialect,
    execute: (sql, params = [], method = "all") =>
      method === "run"
        ? Promise.reject(new Error(`a query only reads: ${sql.slice(0, 120)}`))
        : db.query(sql, params, method).catch((err: unknown) => {
            if (err instanceof QueriesOverloaded) throw errors.unavailable("too many queries are waiting; retry", { waiting: MAX_WAITING_QUERIES });
            if ((err as { code?: unknown } | null)?.code === "57014") throw errors.unavailable("the query ran past its time limit; retry");
            throw err;
          }),
  };
}

/**
 * A {@link Tx} that records statements instead of running them (a write-only projection's `apply`, a
 * subscriber's `reset`); a read is a bug and throws, saying `why` it may not.
 */
export function recorder(consumer: string, dialect: Tx["dialect"], into: BatchStatement[], why = "is declared writesOnly, but its apply read"): Tx {
  return {
    dialect,
    execute: (sql, params = [], method = "all") => {
      if (method !== "run") return Promise.reject(new Error(`consumer ${consumer} ${why}: ${sql}`));
      into.push({ sql, params: bindable(params) });
      return Promise.resolve(undefined as never);
    },
  };
}

/** The inbox-guarded application of events to one subscriber. */
export class EventHandler {
  /** The event types {@link wants} says yes to. */
  readonly #handled = new Set<string>();

  constructor(
    readonly db: Database,
    readonly subscriber: Subscriber,
    /** Run first in every read-model transaction (a consumer lease's fence); throws to refuse the commit. */
    private readonly guard?: (exec: <T = unknown[]>(sql: string, params: unknown[], method: "all" | "run") => Promise<T>) => Promise<void>,
    /** Told each handled event's time (seconds) from the start of its handling to its commit. */
    private readonly observe?: (seconds: number) => void,
    /** The SQLite write worker: runs the batches of a {@link Subscriber.writesOnly} projection (not with a guard, whose check must share the transaction). */
    private readonly batchWriter?: ConsumerBatchWriter,
  ) {
    // The types the subscriber lists under the context that publishes them (a type under another context is never its).
    for (const [context, types] of Object.entries(subscriber.handles)) for (const t of types ?? []) if (EventContexts[t] === context) this.#handled.add(t);
  }

  /** Whether the subscriber cares about this event type at all. */
  wants(eventType: string): boolean {
    return this.#handled.has(eventType);
  }

  /**
   * Whether batches go to the write worker as statements ({@link Subscriber.writesOnly}, no guard), so that
   * the next may be sent on a {@link BatchLink} before this one commits.
   */
  get pipelines(): boolean {
    return !!this.batchWriter && !!this.subscriber.apply && !!this.subscriber.writesOnly && !this.guard;
  }

  /**
   * Applies a batch of events in ONE transaction (projections); throws when any of them fails.
   * `traces` are the events' trace contexts (from their headers), by index. `link` (only where
   * {@link pipelines}) chains the batch to its reader's batch before, which it never commits ahead of.
   */
  async applyBatch(events: EnvelopeBase[], traces?: readonly (TraceHeaders | undefined)[], link?: BatchLink): Promise<Outcome[]> {
    if (!this.subscriber.apply) return this.#reactBatch(events, traces);
    const started = performance.now();
    const tracer = activeTracer();
    // One span per event, all of them the length of the batch's transaction.
    const spans = tracer && events.map((e, i) => (this.wants(e.event_type) ? this.#span(tracer, e, traces?.[i]) : undefined));
    let out: Outcome[];
    try {
      out = await this.#applyBatch(events, link);
    } catch (err) {
      for (const span of spans ?? []) endSpan(span, err);
      throw err;
    }
    const seconds = (performance.now() - started) / 1000;
    for (let i = 0; i < out.length; i++) {
      if (out[i] !== "skipped") this.observe?.(seconds);
      spans?.[i]?.setAttribute("nerve.outcome", out[i]!);
      endSpan(spans?.[i]);
    }
    return out;
  }

  /**
   * A process manager's batch: in stream order within each {@link Subscriber.orderKey} (a refund never
   * overtakes the payment it undoes), different keys side by side. A key's chain stops at its first
   * failure, and the batch fails only once every chain has settled: no command is left running while the
   * runner retries the batch one by one (what went through is then a duplicate).
   *
   * The inbox is read and written once per batch, not twice per event: each of those statements was a
   * transaction of its own, queued on SQLite's one connection behind every group commit, and the soak
   * found access-grants 14,000 events behind at 446 requests/s with them. A crash between the commands
   * and the inbox insert redelivers the batch, whose commands repeat under the same idempotency keys.
   */
  async #reactBatch(events: EnvelopeBase[], traces?: readonly (TraceHeaders | undefined)[]): Promise<Outcome[]> {
    const keyOf = this.subscriber.orderKey;
    const out: Outcome[] = new Array<Outcome>(events.length).fill("skipped");
    const wanted = events.flatMap((e, i) => (this.wants(e.event_type) ? [i] : []));
    const seen = await this.#handledBefore(wanted.map((i) => events[i]!.event_id));
    const chains = new Map<string, number[]>();
    for (const i of wanted) {
      const e = events[i]!;
      // Handled before, or a second copy in this batch (its first copy is handled or fails with the chain).
      if (seen.has(e.event_id)) {
        out[i] = "duplicate";
        continue;
      }
      seen.add(e.event_id);
      const key = keyOf ? keyOf(e) : "";
      const chain = chains.get(key);
      if (chain) chain.push(i);
      else chains.set(key, [i]);
    }
    const settled = await Promise.allSettled(
      [...chains.values()].map(async (chain) => {
        for (const i of chain) out[i] = await this.#observed(events[i]!, traces?.[i], (cause) => this.#react(events[i]!, cause));
      }),
    );
    // What went through is recorded even when another chain failed: its redelivery is then a duplicate.
    const handled = events.filter((_e, i) => out[i] === "handled");
    // With the write worker, the inbox rows go in its queue rather than holding the main connection.
    if (this.batchWriter && !this.guard) {
      if (handled.length > 0) await this.batchWriter.applyConsumerBatch({ inbox: this.#inboxInserts(handled.map((e) => e.event_id)), events: [] });
    } else await this.#record(txOf(this.db), handled);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
    return out;
  }

  // The ids among `ids` this subscriber's inbox already holds.
  async #handledBefore(ids: string[]): Promise<Set<string>> {
    const found = new Set<string>();
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += INBOX_ROWS_PER_STATEMENT) {
      const chunk = unique.slice(i, i + INBOX_ROWS_PER_STATEMENT);
      const rows = await txOf(this.db).execute<{ event_id: string }[]>(
        `select event_id from consumer_inbox where consumer = ? and event_id in (${chunk.map(() => "?").join(", ")})`,
        [this.subscriber.name, ...chunk],
        "all",
      );
      for (const r of rows) found.add(r.event_id);
    }
    return found;
  }

  async #applyBatch(events: EnvelopeBase[], link: BatchLink | undefined): Promise<Outcome[]> {
    if (this.pipelines) return this.#applyBatchAsStatements(this.batchWriter!, events, link);
    return this.#transaction(async (trx) => {
      const tx = txOf(this.db, trx);
      await this.guard?.(tx.execute);
      // The batch's inbox rows go in a few multi-row statements rather than one per event: on SQLite
      // every statement is a round trip to the driver's thread, and that, not the work, bounded the rate.
      const fresh = await this.#record(tx, events.filter((e) => this.wants(e.event_type)));
      const out: Outcome[] = [];
      for (const e of events) {
        if (!this.wants(e.event_type)) out.push("skipped");
        // Taken out on first sight: a second copy of an event in one batch is a duplicate, as before.
        else if (!fresh.delete(e.event_id)) out.push("duplicate");
        else {
          await this.subscriber.apply!(e, tx);
          out.push("handled");
        }
      }
      return out;
    });
  }

  /**
   * Handles one event: in its own transaction for a projection, or through commands for a process
   * manager, which join the event's trace (`trace`, from its headers).
   */
  async handle(event: EnvelopeBase, trace?: TraceHeaders): Promise<Outcome> {
    if (!this.wants(event.event_type)) return "skipped";
    return this.#observed(event, trace, (cause) => this.#handle(event, cause));
  }

  /**
   * Handles a dead letter's event again, as {@link handle} does; a projection that can tell
   * ({@link Subscriber.shows}) is then asked, in the same transaction, whether its read model shows the
   * event. Where it does not — a guard left the event out, and later events of its aggregate may have
   * replaced what it sets — the transaction is rolled back (its inbox row with it) and the answer is
   * `stale`: a retry would report an event handled that the read model never took.
   */
  async retry(event: EnvelopeBase): Promise<RetryOutcome> {
    const shows = this.subscriber.shows;
    if (!this.subscriber.apply || !shows || !this.wants(event.event_type)) return this.handle(event);
    try {
      return await this.#observed(event, undefined, () =>
        this.#transaction(async (trx) => {
          const tx = txOf(this.db, trx);
          await this.guard?.(tx.execute);
          const out = await this.#applyIn(tx, event);
          if (out === "handled" && !(await shows(event, tx))) throw new Stale();
          return out;
        }),
      );
    } catch (err) {
      if (err instanceof Stale) return "stale";
      throw err;
    }
  }

  // Times and traces one event's handling: `work` gets the trace context its commands carry on.
  async #observed(event: EnvelopeBase, trace: TraceHeaders | undefined, work: (cause: TraceHeaders | undefined) => Promise<Outcome>): Promise<Outcome> {
    const started = performance.now();
    const tracer = activeTracer();
    const span = tracer && this.#span(tracer, event, trace);
    try {
      const out = await work(span ? headersOf(span) : trace);
      this.observe?.((performance.now() - started) / 1000);
      span?.setAttribute("nerve.outcome", out);
      endSpan(span);
      return out;
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  }

  // The span of handling one event: a child of the command that caused it.
  #span(tracer: NonNullable<ReturnType<typeof activeTracer>>, e: EnvelopeBase, trace: TraceHeaders | undefined): Span {
    return startSpan(tracer, `${this.subscriber.name} ${e.event_type}`, SpanKind.CONSUMER, trace, { "nerve.consumer": this.subscriber.name, "nerve.event_id": e.event_id });
  }

  async #handle(event: EnvelopeBase, trace: TraceHeaders | undefined): Promise<Outcome> {
    if (this.subscriber.apply) {
      return this.#transaction(async (trx) => {
        const tx = txOf(this.db, trx);
        await this.guard?.(tx.execute);
        return this.#applyIn(tx, event);
      });
    }
    const tx = txOf(this.db);
    const seen = await tx.execute("select 1 as x from consumer_inbox where consumer = ? and event_id = ?", [this.subscriber.name, event.event_id], "get");
    if (seen) return "duplicate";
    await this.#react(event, trace);
    await this.#exclusive(() =>
      tx.execute("insert into consumer_inbox (consumer, event_id, handled_on) values (?, ?, ?) on conflict do nothing", [this.subscriber.name, event.event_id, new Date().toISOString()], "run"),
    );
    return "handled";
  }

  /**
   * A write on the main connection, run when the write worker (if any) has no transaction in flight
   * (SqliteWriteWorker.exclusive): on SQLite the main connection waits for a lock on the main thread, and
   * the event loop with it. `work` does SQL only: nothing that waits for the write worker.
   */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    return exclusively(this.batchWriter, work);
  }

  /** A transaction of the main connection, {@link #exclusive} of the write worker's. */
  #transaction<T>(fn: (trx: Transaction) => Promise<T>): Promise<T> {
    return this.#exclusive(() => this.db.connection.transactional(fn));
  }

  // A process manager's reaction: its commands carry `trace` on.
  async #react(event: EnvelopeBase, trace: TraceHeaders | undefined): Promise<Outcome> {
    await withCause(trace, () => this.subscriber.react!(event));
    return "handled";
  }

  /**
   * A write-only projection's batch through the write worker: its statements are recorded here, then the
   * worker inserts the inbox rows and runs the statements of the events they show new, in one transaction.
   */
  async #applyBatchAsStatements(writer: ConsumerBatchWriter, events: EnvelopeBase[], link: BatchLink | undefined): Promise<Outcome[]> {
    const wanted = events.filter((e) => this.wants(e.event_type));
    const batch: ConsumerBatch = { inbox: this.#inboxInserts(wanted.map((e) => e.event_id)), events: [] };
    for (const e of wanted) {
      const statements: BatchStatement[] = [];
      await this.subscriber.apply!(e, recorder(this.subscriber.name, this.db.dialect, statements));
      batch.events.push({ eventId: e.event_id, statements });
    }
    const handled = await writer.applyConsumerBatch(batch, link);
    let k = 0;
    return events.map((e) => (!this.wants(e.event_type) ? "skipped" : handled[k++] ? "handled" : "duplicate"));
  }

  // The inbox inserts of these event ids (`returning` the ones not seen before), a few hundred rows per statement.
  #inboxInserts(eventIds: string[]): BatchStatement[] {
    const ids = [...new Set(eventIds)];
    const handledOn = new Date().toISOString();
    const out: BatchStatement[] = [];
    for (let i = 0; i < ids.length; i += INBOX_ROWS_PER_STATEMENT) {
      const end = Math.min(ids.length, i + INBOX_ROWS_PER_STATEMENT);
      const params: unknown[] = [];
      for (let k = i; k < end; k++) params.push(this.subscriber.name, ids[k], handledOn);
      out.push({ sql: inboxInsertSql(end - i), params });
    }
    return out;
  }

  // Records events in the inbox (in the caller's transaction); returns the ids it had not seen before.
  async #record(tx: Tx, events: EnvelopeBase[]): Promise<Set<string>> {
    const fresh = new Set<string>();
    for (const st of this.#inboxInserts(events.map((e) => e.event_id))) {
      for (const r of await tx.execute<{ event_id: string }[]>(st.sql, st.params, "all")) fresh.add(r.event_id);
    }
    return fresh;
  }

  async #applyIn(tx: Tx, event: EnvelopeBase): Promise<Outcome> {
    if (!this.wants(event.event_type)) return "skipped";
    // Recording the event and applying it commit together: a redelivery finds it and changes nothing.
    const rows = await tx.execute<unknown[]>(
      "insert into consumer_inbox (consumer, event_id, handled_on) values (?, ?, ?) on conflict do nothing returning event_id",
      [this.subscriber.name, event.event_id, new Date().toISOString()],
      "all",
    );
    if (rows.length === 0) return "duplicate";
    await this.subscriber.apply!(event, tx);
    return "handled";
  }
}
