/**
 * PostgreSQL's connections, in three pools so that no kind of work can take another's: MikroORM's main
 * pool (group commits and their fence checks, projections, the command path's reads, relay, timers,
 * housekeeping); the leases' own (membership, renewals, acquisitions: a burst of anything else must not
 * hold a renewal past a lease's validity and cost the instance its partitions); and the queries' own
 * (read models' queries for other services, through a {@link QueryGate}, each cut off by statement_timeout).
 * A connection keeps TCP alive, so one whose server vanished without a word (a failover, a host gone)
 * while it was idle or after it received the statement fails within about 20 s instead of the kernel's
 * ~15 min (a statement sent after that has unacknowledged data, where keep-alive does not probe: TCP's
 * retransmissions decide); connecting gives up after
 * {@link PG_CONNECT_TIMEOUT_MS}; and a statement waits at most {@link PG_ACQUIRE_TIMEOUT_MS} for a pooled
 * connection (Knex's default was 60 s). And schema changes at start take turns across instances.
 */
import type { MikroORM } from "@mikro-orm/core";
import type { AbstractSqlConnection, Knex } from "@mikro-orm/knex";
import type { Database } from "./database.js";
import { QueryGate } from "./query-gate.js";

/** Connections of the main pool by default (`NERVE_PG_POOL`): Knex's default, what it was before it was a setting. */
export const PG_POOL = 10;

/** Read-model queries that run at once by default (`NERVE_PG_QUERIES`): the queries' pool has as many connections. */
export const PG_QUERIES = 4;

/** statement_timeout of the queries' connections by default (`NERVE_PG_QUERY_TIMEOUT_MS`). */
export const PG_QUERY_TIMEOUT_MS = 5000;

/** Connections of the leases' pool: a round of each lease group (partitions, consumers) at once. */
export const PG_LEASE_POOL = 2;

/**
 * lock_timeout of the leases' connections: a lease statement that waits for a row or table lock this long
 * fails, and the next round (a second later) tries again. A round waiting for a lock blocks the next ones
 * (they run one at a time), so a wait as long as a lease's validity cost the instance every lease it held;
 * a few short failed rounds cost it none.
 */
export const PG_LEASE_LOCK_TIMEOUT_MS = 1000;

/**
 * How long a statement waits for a pooled connection before it fails (KnexTimeoutError, transient): less
 * than a lease's validity (4 s of a 5 s lease), so that a saturated pool shows as failed statements, retried,
 * not as statements that wait past it.
 */
export const PG_ACQUIRE_TIMEOUT_MS = 3000;

/** How long connecting (TCP, TLS, authentication, startup) may take. */
export const PG_CONNECT_TIMEOUT_MS = 5000;

/**
 * Idle time of a connection before TCP's keep-alive probes start. Node 20's libuv then probes every
 * second, ten times: a statement waiting for a server that vanished fails some 20 s later ("Connection
 * terminated unexpectedly", transient), and Knex drops the connection.
 */
const KEEPALIVE_IDLE_MS = 10_000;

/**
 * Knex's options of a pool of `min`..`max` connections whose sessions start with `settings` (sent as the
 * startup option `-c name=value`; whole numbers only, so nothing needs quoting). Its pool, once made,
 * gets {@link failWaitingOnConnectFailures}.
 */
export function pgPoolOptions(pool: { min: number; max: number }, settings: Record<string, number>): Record<string, unknown> {
  return {
    // A failed connect fails a waiting statement only as failWaitingOnConnectFailures says: not the refusal
    // of a connection over the server's limits (tarn's propagateCreateError, Knex's default, failed one for it).
    pool: { ...pool, propagateCreateError: false },
    // A failed statement's error keeps its `$n` placeholders, not the values (a learner's email): it is logged.
    compileSqlOnError: false,
    acquireConnectionTimeout: PG_ACQUIRE_TIMEOUT_MS,
    connection: {
      options: Object.entries(settings)
        .map(([name, value]) => `-c ${name}=${Math.max(0, Math.floor(value))}`)
        .join(" "),
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
      connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    },
  };
}

/** PostgreSQL's SQLSTATE too_many_connections: max_connections, or a role's or database's CONNECTION LIMIT, reached. */
const TOO_MANY_CONNECTIONS = "53300";

/** What {@link failWaitingOnConnectFailures} needs of Knex's (tarn's) pool. */
interface TarnPool {
  on(event: "createFail", handler: (eventId: number, err: unknown) => void): void;
  numUsed(): number;
  numFree(): number;
  /** Protected in tarn's typings: the statements waiting for a connection, first come first. */
  readonly pendingAcquires?: readonly { reject(err: unknown): void }[];
}

/**
 * How a failed connect meets the statements waiting for a connection of `connection`'s pool (made with
 * {@link pgPoolOptions}, whose pool keeps them waiting, and tries to connect again 200 ms later):
 *
 * - The server refused it for a connection limit (max_connections, the role's CONNECTION LIMIT) while
 *   the pool has connections: they wait on, up to the acquire timeout, for those, which serve them in
 *   milliseconds (a pool with none fails the first at once, with the server's refusal). Failing one of
 *   them at once per refusal (Knex's default, tarn's propagateCreateError) failed a third of a burst's
 *   commands and some lease rounds, beside connections about to be free.
 * - Any other failure (the server out of reach, starting, shutting down; a connect timeout): the first
 *   waiting statement fails at once with it, as by Knex's default. Waiting would not mend those within
 *   the acquire timeout: a statement, a lease round, a request waited it out (3 s) instead of failing
 *   at once, so a cut of the database held each request 3 s longer and cost the instance its leases.
 */
export function failWaitingOnConnectFailures(connection: AbstractSqlConnection): void {
  const pool = (connection.getKnex().client as { pool?: TarnPool }).pool;
  pool?.on("createFail", (_eventId, err) => {
    // Only while the pool has a connection to wait for: one with none open (a side pool's first statement,
    // any pool after a restart) would wait out the acquire timeout for nothing, and fail with Knex's "pool
    // is probably full" instead of the server's own refusal (review).
    if ((err as { code?: unknown } | undefined)?.code === TOO_MANY_CONNECTIONS && pool.numUsed() + pool.numFree() > 0) return;
    // What tarn does with propagateCreateError (Pool.js, _doCreate): the first waiting acquire fails with it.
    pool.pendingAcquires?.[0]?.reject(err);
  });
}

/**
 * How the queries' sessions get their statement_timeout: `startup`, the `-c` startup option (free); or
 * `transaction`, where the sessions came without it — a pooler in transaction mode told to ignore the
 * `options` startup parameter (PgBouncer's ignore_startup_parameters) drops it silently — so each query
 * sets it in a transaction of its own ({@link withLocalSettings}).
 */
export type QueryTimeoutSetBy = "startup" | "transaction";

/** The pools beside MikroORM's: the leases' and the queries' (behind their gate). */
export interface PostgresSidePools {
  readonly leases: AbstractSqlConnection;
  readonly queries: AbstractSqlConnection;
  readonly gate: QueryGate;
  /** How the queries get their statement_timeout, as found at open. */
  readonly queryTimeoutSetBy: QueryTimeoutSetBy;
  close(): Promise<void>;
}

/**
 * Opens the leases' and the queries' pools beside `orm`'s (lazily: a connection is made at its first
 * statement). Each is a MikroORM connection of its own, so results and errors come back as the main
 * pool's do. Every session gets idle_in_transaction_session_timeout; the leases' also lock_timeout, the
 * queries' statement_timeout.
 */
export async function openPostgresSidePools(orm: MikroORM, url: string, o: { queries: number; queryTimeoutMs: number; idleInTransactionMs: number }): Promise<PostgresSidePools> {
  const { PostgreSqlConnection } = await import("@mikro-orm/postgresql");
  const side = (max: number, settings: Record<string, number>) => {
    const c = new PostgreSqlConnection(orm.config, { clientUrl: url, driverOptions: pgPoolOptions({ min: 0, max }, settings) }, "read");
    c.connect(); // Makes the Knex pool (no connection yet), which close() destroys.
    failWaitingOnConnectFailures(c);
    return c;
  };
  const idle = { idle_in_transaction_session_timeout: o.idleInTransactionMs };
  const leases = side(PG_LEASE_POOL, { ...idle, lock_timeout: PG_LEASE_LOCK_TIMEOUT_MS });
  const queries = side(o.queries, { ...idle, statement_timeout: o.queryTimeoutMs });
  const gate = new QueryGate(o.queries, PG_ACQUIRE_TIMEOUT_MS);
  const close = async () => {
    gate.close();
    await Promise.allSettled([leases.close(true), queries.close(true)]);
  };
  let queryTimeoutSetBy: QueryTimeoutSetBy;
  try {
    // One session of the queries' pool says whether the startup options arrived. Behind a pooler in
    // transaction mode every server session is the pooler's, made alike: one answers for all.
    const res = (await queries.getKnex().raw("select setting from pg_settings where name = ?", ["statement_timeout"])) as { rows: { setting: string }[] };
    queryTimeoutSetBy = Number(res.rows[0]?.setting) === Math.max(0, Math.floor(o.queryTimeoutMs)) ? "startup" : "transaction";
  } catch (err) {
    await close();
    throw err;
  }
  return { leases, queries, gate, queryTimeoutSetBy, close };
}

/**
 * `run` (an executor on `connection`'s pool) with each statement in a transaction of its own that first
 * gives itself `settings` (set_config(…, true), as SET LOCAL: they end with the transaction). For
 * sessions that came without them ({@link QueryTimeoutSetBy}): a session-wide SET would stay on the
 * pooler's server session and reach its next client, a transaction stays on one. Three round trips more
 * a statement (begin, set_config, commit).
 */
export function withLocalSettings(connection: AbstractSqlConnection, run: Database["execute"], settings: Record<string, number>): Database["execute"] {
  const entries = Object.entries(settings);
  const set = `select ${entries.map(() => "set_config(?, ?, true)").join(", ")}`;
  const values = entries.flatMap(([name, value]) => [name, String(Math.max(0, Math.floor(value)))]);
  return async (sql, params = [], method = "all") => {
    const trx = await connection.getKnex().transaction();
    try {
      await run(set, values, "get", trx);
      const out = await run(sql, params, method, trx);
      await trx.commit();
      return out;
    } catch (err) {
      await trx.rollback().catch(() => undefined);
      throw err;
    }
  };
}

/** The key of the transaction-scoped advisory lock every schema change at start holds ("Nerv"). */
export const SCHEMA_LOCK_KEY = 0x4e657276;

/** How long a start waits for another instance's schema change (a new table, a trigram index over every course). */
const SCHEMA_LOCK_WAIT_MS = 60_000;

/**
 * How long one DDL statement of a start waits for its table's lock. An ALTER waiting behind a long query
 * (of an instance already running) would hold every later statement on that table behind it for as long:
 * the start fails instead, and is tried again by whatever restarts it.
 */
export const DDL_LOCK_TIMEOUT_MS = 5000;

/**
 * Runs `work` in one transaction on a connection of the main pool that holds the schema's advisory lock,
 * so that instances starting together change the schema one after another (two at once on an empty
 * database: one failed with `relation … already exists`). The lock is the transaction's
 * (pg_advisory_xact_lock): it goes with the commit, the rollback or the session, and a pooler in
 * transaction mode keeps it on one server session. The transaction's DDL is all or nothing.
 */
export async function underSchemaLock<T>(connection: AbstractSqlConnection, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  const trx = await connection.getKnex().transaction();
  let phase = "waiting for another instance's schema change";
  try {
    // For this transaction only (set_config's `true`); idle between statements while `work` reads the catalog on other connections.
    await trx.raw("select set_config('idle_in_transaction_session_timeout', ?, true), set_config('lock_timeout', ?, true)", [String(SCHEMA_LOCK_WAIT_MS), String(SCHEMA_LOCK_WAIT_MS)]);
    await trx.raw("select pg_advisory_xact_lock(?)", [SCHEMA_LOCK_KEY]);
    await trx.raw("select set_config('lock_timeout', ?, true)", [String(DDL_LOCK_TIMEOUT_MS)]);
    phase = "waiting for a table's lock";
    const out = await work(trx);
    await trx.commit();
    return out;
  } catch (err) {
    await trx.rollback().catch(() => undefined);
    if ((err as { code?: unknown }).code === "55P03") throw new Error(`the schema change at start gave up ${phase} (lock_timeout); start again`, { cause: err });
    throw err;
  }
}

/**
 * The DDL of MikroORM's safe schema update, but for its drops of indexes named by `handMade`. A safe update
 * drops no table or column, yet it does drop every index of a table it knows that no entity declares
 * (SqlSchemaGenerator.alterTable's removed indexes): the trigram indexes the search projection makes by hand
 * went at every open — an ACCESS EXCLUSIVE lock, a rebuild inside the next start's schema change, and
 * none at all after a start without consumers (a CLI's, a gateway's). They cannot be declared instead:
 * MikroORM would then make them before pg_trgm exists, and a database without it could not start.
 */
export async function postgresSchemaUpdate(orm: MikroORM, handMade: readonly RegExp[]): Promise<string> {
  const sql = await orm.schema.getUpdateSchemaSQL({ safe: true, wrap: false });
  // One statement a line (`drop index "name";`, schema-qualified outside the default schema).
  const kept = sql.split("\n").filter((line) => {
    const name = /^drop index (?:"[^"]+"\.)?"([^"]+)";?$/i.exec(line.trim())?.[1];
    return name === undefined || !handMade.some((p) => p.test(name));
  });
  return kept.join("\n").trim() === "" ? "" : kept.join("\n");
}

/** {@link postgresSchemaUpdate}, computed and run under {@link underSchemaLock}: no table, column or hand-made index is dropped. */
export async function updatePostgresSchema(orm: MikroORM, connection: AbstractSqlConnection, handMade: readonly RegExp[]): Promise<void> {
  await underSchemaLock(connection, async (trx) => {
    // Computed under the lock (reading the catalog on another connection), so it sees what an instance
    // that took the lock first made. DDL alone, no values: run as MikroORM's text, without bindings.
    const sql = await postgresSchemaUpdate(orm, handMade);
    if (sql !== "") await connection.getKnex().raw(sql).transacting(trx);
  });
}
