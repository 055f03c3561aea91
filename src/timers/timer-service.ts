/** Durable timers: rows written with the aggregate's state, fired by polling, so downtime delays but never loses them. */
import { reportFailure, sayingAtMostEvery } from "../supervision/index.js";
import { isTransientFailure } from "../consumers/transient.js";
import type { Context, DomainEvent } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import { Repository, exclusively, partitionClause, type Database, type ExclusiveWriter, type SqlOp, type TimerRow } from "../persistence/index.js";
import type { CommandBus } from "../runtime/index.js";
import { partitionOf } from "../cluster/partition.js";
import type { Ownership } from "../cluster/index.js";

/** What a timer kind does when due, and when it is next due given the new state. */
export interface TimerKind {
  readonly context: Context;
  readonly aggregateType: string;
  readonly kind: string;
  /** The operation run at the deadline. */
  fire(state: unknown, now: string): DomainEvent[];
  /** The next deadline of a state, or null for none. */
  deadline(state: unknown): string | null;
}

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

/** Options of the timer service. */
export interface TimerServiceOptions {
  db: Database;
  bus: CommandBus;
  logger: Logger;
  kinds: TimerKind[];
  /** How often due timers are looked for (ms). */
  pollMs?: number;
  /** Now, for tests; the system clock by default. */
  clock?: () => Date;
  /**
   * The SQLite write worker, when one runs beside the main connection: a timer's row is written in its
   * exclusive turn, so the main thread never waits for the worker's lock inside SQLite.
   */
  writer?: ExclusiveWriter | undefined;
  /**
   * Whose partitions' timers this service fires (several instances on one database): only the owner
   * of an aggregate may run its operation. Without one, every timer is its own (one instance).
   */
  ownership?: Ownership | undefined;
}

/** A kind's name in the log and on /metrics: its aggregate type and kind, `AccessRecord/expire`. */
export const timerKindName = (k: Pick<TimerKind, "aggregateType" | "kind">): string => `${k.aggregateType}/${k.kind}`;

/** At most this many due timers are counted (of unknown kinds at a look, overdue for /metrics): it stays cheap however many wait. */
const COUNTED = 10_000;

/** A `where` with its values, bound in order. */
interface Clause {
  sql: string;
  params: unknown[];
}

/**
 * The rows of `kinds`, by {@link timerKindName} (`expire` of an Order is not `expire` of an AccessRecord),
 * bound as values, never written into the SQL text. One expression of both columns on purpose: written as
 * `aggregate_type = ? and kind = ?` pairs, SQLite searched the primary key by aggregate type and sorted
 * every row of the type instead of reading the due-time index (83 ms instead of 3 ms a poll, 200,000 timers).
 */
function kindsClause(kinds: readonly TimerKind[]): Clause {
  if (kinds.length === 0) return { sql: "1 = 0", params: [] };
  return { sql: `(aggregate_type || '/' || kind) in (${kinds.map(() => "?").join(", ")})`, params: kinds.map(timerKindName) };
}

/** The due timers (as of `now`) of `partitions` (every one when undefined), as a `where`; null for none. */
function dueScope(partitions: readonly number[] | undefined, now: string): Clause | null {
  const only = partitionClause(partitions);
  if (only === null) return null;
  return only ? { sql: `${only} and due_at <= ?`, params: [...partitions!, now] } : { sql: "due_at <= ?", params: [now] };
}

/** What the timers did since start, by {@link timerKindName}; read by /metrics. */
export interface TimerStats {
  /** Timers fired: their operation run on the aggregate, whether or not it emitted. */
  readonly fired: Map<string, number>;
  /**
   * Fires that failed: `transient` for now (an outage, a full mailbox, a partition's fence: the row stays
   * due for the next poll), `permanent` otherwise (the row backed off; also a background failure).
   */
  readonly failures: Map<string, { transient: number; permanent: number }>;
}

/** The due timers of the partitions held now, not yet fired: how many (counted up to 10,000) and how late the oldest is. */
export interface OverdueTimers {
  count: number;
  /** 0 when there is none. */
  oldestAgeMs: number;
}

const rowKey = (row: TimerRow) => `${row.aggregate_type}\u0000${row.aggregate_id}\u0000${row.kind}`;

/** How long a timer whose fire failed waits before it is tried again: 15 s, doubled per failure, at most 15 min. */
export const timerRetryDelayMs = (failures: number): number => Math.min(15 * 60_000, 15_000 * 2 ** Math.max(0, failures - 1));

/** Polls for due timers and runs their operations on the aggregates' actors. */
export class TimerService {
  readonly #o: TimerServiceOptions;
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> | undefined;
  /** Rows older than the partition column got theirs (once, before the first poll of some partitions only). */
  #filled = false;
  #stopping = false;
  /** Timers fired since start. */
  fired = 0;
  /** Timers whose fire failed for good since start (each also counted in nerve_background_failures_total{task="timers"}). */
  failed = 0;
  /** Fires and failures since start, by kind. */
  readonly stats: TimerStats = { fired: new Map(), failures: new Map() };
  /**
   * Due timers of kinds this version does not know, by {@link timerKindName}, of the partitions held at
   * the latest look (once a minute; at most 10,000 counted): left for an instance that knows them.
   */
  readonly unknownDue = new Map<string, number>();
  /** Consecutive failures per timer row, for its back-off; a row leaves on its first success. */
  readonly #failures = new Map<string, number>();
  readonly #known: Clause;
  readonly #lookForUnknown = sayingAtMostEvery();
  /** A failure for now repeats at every poll while it lasts (every row of a full mailbox's aggregate…): said once a minute. */
  readonly #sayFailedForNow = sayingAtMostEvery();
  #failedForNowUnsaid = 0;

  constructor(opts: TimerServiceOptions) {
    this.#o = opts;
    this.#known = kindsClause(opts.kinds);
  }

  /** Starts polling; the first poll runs at once (catching up on what fell due while down). */
  start(): void {
    this.#stopping = false;
    const run = () => {
      // A failed poll (the database away) is reported and the next tick polls again.
      this.#tick ??= this.poll()
        .catch((err: unknown) => reportFailure(this.#o.logger, "timers", err, "timer poll failed; polling again"))
        .finally(() => (this.#tick = undefined));
    };
    run();
    this.#timer = setInterval(run, this.#o.pollMs ?? 1000);
    this.#timer.unref();
  }

  /** Stops polling and waits for the poll in progress, which fires no further timer. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    await this.#tick;
  }

  /**
   * A failed fire is counted and logged, and its row's due_at moved on by {@link timerRetryDelayMs}: rows
   * that fail every time (a broken aggregate, a kind's bug) otherwise came first in every poll's window of
   * due timers, and enough of them kept every later timer from firing. Only the row's turn moves: what a
   * fire decides and records comes from the aggregate's state (an access's own expires_at).
   */
  async #backOff(row: TimerRow, now: string, err: unknown): Promise<void> {
    const failures = (this.#failures.get(rowKey(row)) ?? 0) + 1;
    this.#failures.set(rowKey(row), failures);
    this.failed++;
    this.#failuresOf(row).permanent++;
    reportFailure(this.#o.logger, "timers", err, `timer failed (${failures} in a row); tried again in ${timerRetryDelayMs(failures) / 1000} s`);
    const later = new Date(Date.parse(now) + timerRetryDelayMs(failures)).toISOString();
    const op = timerFollowUp({ aggregateType: row.aggregate_type, kind: row.kind }, row, later);
    // Should the database be what failed, the row stays due and the next poll tries it again.
    await exclusively(this.#o.writer, () => this.#o.db.execute(op.sql, op.params, "run")).catch(() => undefined);
    if (this.#failures.size > 10_000) this.#failures.clear();
  }

  /**
   * Counts the due timers (of `scope`) of kinds this version does not know, and says so when there are
   * any: during a rolling upgrade that adds a kind they wait for an upgraded instance to hold their
   * partition, but after a rollback they wait for good. A query (on SQLite off the main thread), bounded;
   * one that fails leaves the last counts, and the next look is a minute later all the same.
   */
  async #countUnknown(scope: Clause): Promise<void> {
    const rows = await this.#o.db
      .query<{ aggregate_type: string; kind: string; n: unknown }[]>(
        `select aggregate_type, kind, count(*) as n from (select aggregate_type, kind from nerve_timers where ${scope.sql} and not (${this.#known.sql}) limit ?) u group by aggregate_type, kind`,
        [...scope.params, ...this.#known.params, COUNTED],
        "all",
      )
      .catch(() => undefined);
    if (!rows) return;
    this.unknownDue.clear();
    for (const r of rows) this.unknownDue.set(timerKindName({ aggregateType: r.aggregate_type, kind: r.kind }), Number(r.n));
    if (rows.length > 0) {
      this.#o.logger.warn(
        { unknown: Object.fromEntries(this.unknownDue) },
        "due timers of kinds this version does not know: left for an instance that knows them (said at most once a minute)",
      );
    }
  }

  #failuresOf(row: TimerRow): { transient: number; permanent: number } {
    const kind = timerKindName({ aggregateType: row.aggregate_type, kind: row.kind });
    let f = this.stats.failures.get(kind);
    if (!f) this.stats.failures.set(kind, (f = { transient: 0, permanent: 0 }));
    return f;
  }

  /**
   * A fire that failed for now leaves its row due, and the next poll tries it again: counted, and said
   * at most once a minute with how many since (it was a warning per row per poll, and nothing on /metrics).
   */
  #failedForNow(row: TimerRow, err: unknown): void {
    this.#failuresOf(row).transient++;
    this.#failedForNowUnsaid++;
    if (!this.#sayFailedForNow()) return;
    this.#o.logger.warn({ err, timer: row, failures: this.#failedForNowUnsaid }, `timers failed for now (${this.#failedForNowUnsaid} since this was last said); each is tried again at the next poll`);
    this.#failedForNowUnsaid = 0;
  }

  /**
   * The due timers of the partitions held now, every kind's (those of unknown kinds too): for /metrics,
   * which would otherwise show nothing while timers stay due — failing for now at every poll, of a kind
   * no instance fires, or behind a poll that hangs. One query (on SQLite off the main thread) over the
   * due-time indexes, the count stopping at 10,000.
   */
  async overdue(): Promise<OverdueTimers> {
    const now = this.#o.clock?.() ?? new Date();
    const scope = dueScope(this.#o.ownership?.held(), now.toISOString());
    if (scope === null) return { count: 0, oldestAgeMs: 0 };
    const row = await this.#o.db.query<{ n: unknown; oldest: unknown } | undefined>(
      `select (select count(*) from (select 1 from nerve_timers where ${scope.sql} limit ?) c) as n, (select min(due_at) from nerve_timers where ${scope.sql}) as oldest`,
      [...scope.params, COUNTED, ...scope.params],
      "get",
    );
    const oldest = typeof row?.oldest === "string" ? Date.parse(row.oldest) : undefined;
    return { count: Number(row?.n ?? 0), oldestAgeMs: oldest === undefined ? 0 : Math.max(0, now.getTime() - oldest) };
  }

  /** Fires every due timer of the partitions held now once. */
  async poll(): Promise<void> {
    const { db, ownership } = this.#o;
    const now = (this.#o.clock?.() ?? new Date()).toISOString();
    // Holding every partition (one instance: always), the plain query on due_at.
    const partitions = ownership?.held();
    const only = partitionClause(partitions);
    const scope = dueScope(partitions, now);
    if (scope === null) return;
    // A read of some partitions only would miss rows older than the column: they get theirs first.
    if (only && !this.#filled) {
      await new Repository(db).fillPartitions("nerve_timers");
      this.#filled = true;
    }
    // Only the kinds this version fires: rows of others, left where they are, came first in every
    // window of 500 due rows, and 500 of them kept every known timer from firing.
    if (this.#lookForUnknown()) await this.#countUnknown(scope);
    const due = await db.execute<TimerRow[]>(`select * from nerve_timers where ${scope.sql} and ${this.#known.sql} order by due_at limit 500`, [...scope.params, ...this.#known.params], "all");
    const held = (row: TimerRow) => !ownership || ownership.fence(row.partition_no ?? partitionOf(row.aggregate_id)) !== undefined;
    for (const row of due) {
      // A catch-up of hundreds of timers must not hold a shutdown: the rest fire at the next start.
      if (this.#stopping) break;
      const k = this.#o.kinds.find((x) => x.kind === row.kind && x.aggregateType === row.aggregate_type);
      // A partition lost while this poll ran is its new owner's to fire.
      if (!k || !held(row)) continue;
      try {
        // Fired as of no earlier than the poll that found it due: should the clock step back between the
        // two readings (NTP), the fire would see the deadline not reached, emit nothing, and the follow-up —
        // due by the poll's clock — delete the row: an access that never expired. (Both are ISO-8601 UTC.)
        await this.#o.bus.executeInternal(k.context, row.aggregate_id, k.kind, (state, at) => k.fire(state, at < now ? now : at));
        // Whether or not it emitted, the row now follows the state (a no-op must not fire forever).
        const { state } = await this.#o.bus.readState(row.aggregate_type as never, row.aggregate_id);
        const next = k.deadline(state);
        const op = timerFollowUp(k, row, next !== null && next <= now ? null : next);
        // Moved meanwhile, the row is its new owner's to keep in step.
        if (held(row)) await exclusively(this.#o.writer, () => db.execute(op.sql, op.params, "run"));
        this.fired++;
        this.stats.fired.set(timerKindName(k), (this.stats.fired.get(timerKindName(k)) ?? 0) + 1);
        if (this.#failures.size > 0) this.#failures.delete(rowKey(row));
      } catch (err) {
        // An outage (the database, a hand-off's fence) passes by itself: the row stays due for the next
        // poll — or for its partition's new owner, whose row this instance must not move.
        if (isTransientFailure(err) || !held(row)) this.#failedForNow(row, err);
        else await this.#backOff(row, now, err);
      }
    }
  }
}
