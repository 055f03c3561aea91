/** Durable timers: rows written with the aggregate's state, fired by polling, so downtime delays but never loses them. */
import { FailureSpell, reportFailure, sayingAtMostEvery } from "../supervision/index.js";
import { isTransientFailure } from "../consumers/transient.js";
import type { Logger } from "../log/index.js";
import { Repository, exclusively, partitionClause, type Database, type ExclusiveWriter, type TimerRow } from "../persistence/index.js";
import type { CommandBus } from "../runtime/index.js";
import { partitionOf } from "../cluster/partition.js";
import { FollowUpWriter } from "./follow-up-writer.js";
import { timerKindName, type TimerKind } from "./timer-kind.js";
import { dueScope, kindsClause, timerFollowUp, type Clause } from "./timer-rows.js";
import type { Ownership } from "../cluster/index.js";

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
  /** How many aggregates' timers are fired at once (default {@link TIMER_CONCURRENCY}); one aggregate's always one after another. */
  concurrency?: number;
}

/** How many due timers a poll reads, earliest first. */
export const WINDOW = 500;

/** How many aggregates' timers a poll fires at once by default. */
export const TIMER_CONCURRENCY = 32;

/** At most this many due timers are counted (of unknown kinds at a look, overdue for /metrics): it stays cheap however many wait. */
const COUNTED = 10_000;

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
  /** Consecutive failures per timer row, for its back-off, and when the first of them was; a row leaves on its first success. */
  readonly #failures = new Map<string, { n: number; since: number; partition: number }>();
  readonly #known: Clause;
  readonly #followUps: FollowUpWriter;
  readonly #lookForUnknown = sayingAtMostEvery();
  /** A failure for now repeats at every poll while it lasts (every row of a full mailbox's aggregate…): said once a minute. */
  readonly #sayFailedForNow = sayingAtMostEvery();
  #failedForNowUnsaid = 0;
  /** Failed polls (the database away fails one a second), said at most once a minute. */
  readonly #pollFailures: FailureSpell;

  constructor(opts: TimerServiceOptions) {
    this.#o = opts;
    this.#known = kindsClause(opts.kinds);
    this.#followUps = new FollowUpWriter(opts.db, opts.writer);
    this.#pollFailures = new FailureSpell(opts.logger, "timers", "timer poll failed; polling again");
  }

  /** Starts polling; the first poll runs at once (catching up on what fell due while down). */
  start(): void {
    this.#stopping = false;
    const run = () => {
      // A failed poll (the database away) is reported and the next tick polls again.
      this.#tick ??= this.#catchUp()
        .then(() => this.#pollFailures.succeeded())
        .catch((err: unknown) => this.#pollFailures.failed(err))
        .finally(() => (this.#tick = undefined));
    };
    run();
    this.#timer = setInterval(run, this.#o.pollMs ?? 1000);
    this.#timer.unref();
  }

  /**
   * Polls, and polls again at once while a poll read a full window and fired at least half of it (a mass
   * expiry): a window a tick drained capped the rate at 500 a second. Fewer fired means the rest fail, and
   * trying them again at once would only repeat their failures.
   */
  async #catchUp(): Promise<void> {
    for (;;) {
      const { read, fired } = await this.poll();
      if (this.#stopping || read < WINDOW || fired < WINDOW / 2) return;
    }
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
    const before = this.#failures.get(rowKey(row));
    const failures = (before?.n ?? 0) + 1;
    this.#failures.set(rowKey(row), { n: failures, since: before?.since ?? Date.parse(now), partition: row.partition_no ?? partitionOf(row.aggregate_id) });
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
   * The timers whose last fire failed for good (not for now) and that have not fired since, and how long
   * ago the first failure of the oldest such spell was: their due_at moves on with each back-off, so they
   * never show as overdue (`nerve_timers_overdue` stayed 0 while an access was never expired). Since this
   * process started: a restart forgets them until they fail again.
   */
  failing(): { count: number; oldestAgeMs: number } {
    // Of the partitions held now: one handed off is its new owner's to fire (and to count), and would
    // otherwise stay here, failing for good in this count, after it fired there.
    const held = this.#o.ownership ? new Set(this.#o.ownership.held()) : undefined;
    let count = 0;
    let oldest = Infinity;
    for (const f of this.#failures.values()) {
      if (held && !held.has(f.partition)) continue;
      count++;
      oldest = Math.min(oldest, f.since);
    }
    return { count, oldestAgeMs: count > 0 ? Math.max(0, (this.#o.clock?.() ?? new Date()).getTime() - oldest) : 0 };
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

  /** Fires the due timers of the partitions held now, the first {@link WINDOW} by due time, once; resolves with how many it read and fired. */
  async poll(): Promise<{ read: number; fired: number }> {
    const { db, ownership } = this.#o;
    const now = (this.#o.clock?.() ?? new Date()).toISOString();
    // Holding every partition (one instance: always), the plain query on due_at.
    const partitions = ownership?.held();
    const only = partitionClause(partitions);
    const scope = dueScope(partitions, now);
    if (scope === null) {
      // No partition held: none of its due timers is this instance's to count (it kept its last counts).
      this.unknownDue.clear();
      return { read: 0, fired: 0 };
    }
    // A read of some partitions only would miss rows older than the column: they get theirs first.
    if (only && !this.#filled) {
      await new Repository(db).fillPartitions("nerve_timers");
      this.#filled = true;
    }
    // Only the kinds this version fires: rows of others, left where they are, came first in every
    // window of 500 due rows, and 500 of them kept every known timer from firing.
    if (this.#lookForUnknown()) await this.#countUnknown(scope);
    const due = await db.execute<TimerRow[]>(`select * from nerve_timers where ${scope.sql} and ${this.#known.sql} order by due_at limit ?`, [...scope.params, ...this.#known.params, WINDOW], "all");
    const held = (row: TimerRow) => !ownership || ownership.fence(row.partition_no ?? partitionOf(row.aggregate_id)) !== undefined;
    // One lane per aggregate, its timers in due order one after another; the lanes of different
    // aggregates at once, at most `concurrency`, so that their commits share group commits.
    const lanes = new Map<string, TimerRow[]>();
    for (const row of due) {
      const key = `${row.aggregate_type}\u0000${row.aggregate_id}`;
      const lane = lanes.get(key);
      if (lane) lane.push(row);
      else lanes.set(key, [row]);
    }
    const queue = [...lanes.values()];
    let next = 0;
    const firedBefore = this.fired;
    const runLanes = async () => {
      for (let lane = queue[next++]; lane; lane = queue[next++]) {
        for (const row of lane) {
          // A catch-up of hundreds of timers must not hold a shutdown: the rest fire at the next start.
          if (this.#stopping) return;
          await this.#fire(row, now, held);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(queue.length, this.#o.concurrency ?? TIMER_CONCURRENCY) }, runLanes));
    return { read: due.length, fired: this.fired - firedBefore };
  }

  /** Fires one due timer, then keeps its row in step with the state; a failure is counted, and backed off when it lasts. */
  async #fire(row: TimerRow, now: string, held: (row: TimerRow) => boolean): Promise<void> {
    const k = this.#o.kinds.find((x) => x.kind === row.kind && x.aggregateType === row.aggregate_type);
    // A partition lost while this poll ran is its new owner's to fire.
    if (!k || !held(row)) return;
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
      if (held(row)) await this.#followUps.write(op);
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
