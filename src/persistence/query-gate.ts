/**
 * PostgreSQL's read-model queries (Database.query) through a gate: at most `limit` run at once, each on a
 * connection of the queries' own pool; at most {@link MAX_WAITING_QUERIES} wait for a turn, each at most
 * `maxWaitMs`, first come first served; the rest are refused with {@link QueriesOverloaded} (answered
 * `unavailable`, safe to retry), as SQLite's query thread refuses them. Without it a burst of queries
 * (SearchCatalog, GetLearnerProgress, …) took every connection of the one pool, and group commits and
 * lease renewals waited behind them.
 */
import { MAX_WAITING_QUERIES, QueriesOverloaded, QueryUnavailable } from "./query-thread.js";

/** What the gate has done. */
export interface QueryGateStats {
  /** Queries run to their end, answered or failed. */
  queries: number;
  /** Of them, those that failed. */
  failures: number;
  /** Refused: too many waiting already, or no turn within the wait. */
  refused: number;
  /** Of the failures, those PostgreSQL cancelled (57014): cut off by statement_timeout, or by an operator's pg_cancel_backend. */
  cancelled: number;
}

/** PostgreSQL's SQLSTATE of a statement cancelled (query_canceled). */
const QUERY_CANCELED = "57014";

interface Waiter {
  go(): void;
  fail(err: Error): void;
  timer: NodeJS.Timeout;
}

/** At most `limit` queries at once; a bounded, time-limited queue before them. */
export class QueryGate {
  readonly stats: QueryGateStats = { queries: 0, failures: 0, refused: 0, cancelled: 0 };
  #running = 0;
  readonly #waiting: Waiter[] = [];
  #closed = false;

  constructor(
    private readonly limit: number,
    private readonly maxWaitMs: number,
    private readonly maxWaiting = MAX_WAITING_QUERIES,
  ) {}

  /** Runs `query` once a turn is free; refuses it (QueriesOverloaded) when none comes in time. */
  async run<T>(query: () => Promise<T>): Promise<T> {
    await this.#enter();
    try {
      return await query();
    } catch (err) {
      this.stats.failures++;
      if ((err as { code?: unknown } | null)?.code === QUERY_CANCELED) this.stats.cancelled++;
      throw err;
    } finally {
      this.stats.queries++;
      this.#leave();
    }
  }

  /** Fails the queries still waiting; those running finish. */
  close(): void {
    this.#closed = true;
    for (const w of this.#waiting.splice(0)) w.fail(new QueryUnavailable("the database is closed"));
  }

  #enter(): Promise<void> {
    if (this.#closed) return Promise.reject(new QueryUnavailable("the database is closed"));
    if (this.#running < this.limit) {
      this.#running++;
      return Promise.resolve();
    }
    if (this.#waiting.length >= this.maxWaiting) {
      this.stats.refused++;
      return Promise.reject(new QueriesOverloaded(`${this.#waiting.length} queries are waiting for a query connection already`));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        go: () => {
          clearTimeout(w.timer);
          resolve();
        },
        fail: (err) => {
          clearTimeout(w.timer);
          reject(err);
        },
        timer: setTimeout(() => {
          this.#waiting.splice(this.#waiting.indexOf(w), 1);
          this.stats.refused++;
          reject(new QueriesOverloaded(`no query connection was free within ${this.maxWaitMs} ms`));
        }, this.maxWaitMs),
      };
      this.#waiting.push(w);
    });
  }

  // A finished query hands its turn to the longest waiter, if any.
  #leave(): void {
    const next = this.#waiting.shift();
    if (next) next.go();
    else this.#running--;
  }
}
