/**
 * PostgreSQL's connections, in three pools so that no kind of work can take another's: MikroORM's main
 * pool (group commits and their fence checks, projections, the command path's reads, relay, timers,
 * housekeeping); the leases' own (membership, renewals, acquisitions: a burst of anything else must not
 * hold a renewal past a lease's validity and cost the instance its partitions); and the queries' own
 * (read models' queries for other services, through a {@link QueryGate}, each cut off by statement_timeout).
 * A connection keeps TCP alive, so one whose server vanished without a word (a failover, a host gone)
 * fails within about 20 s instead of the kernel's ~15 min; connecting gives up after
 * {@link PG_CONNECT_TIMEOUT_MS}; and a statement waits at most {@link PG_ACQUIRE_TIMEOUT_MS} for a pooled
 * connection (Knex's default was 60 s).
 */
import type { MikroORM } from "@mikro-orm/core";
import type { AbstractSqlConnection } from "@mikro-orm/knex";
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
 * startup option `-c name=value`; whole numbers only, so nothing needs quoting).
 */
export function pgPoolOptions(pool: { min: number; max: number }, settings: Record<string, number>): Record<string, unknown> {
  return {
    pool,
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

/** The pools beside MikroORM's: the leases' and the queries' (behind their gate). */
export interface PostgresSidePools {
  readonly leases: AbstractSqlConnection;
  readonly queries: AbstractSqlConnection;
  readonly gate: QueryGate;
  close(): Promise<void>;
}

/**
 * Opens the leases' and the queries' pools beside `orm`'s (lazily: a connection is made at its first
 * statement). Each is a MikroORM connection of its own, so results and errors come back as the main
 * pool's do. Every session gets idle_in_transaction_session_timeout; the queries' also statement_timeout.
 */
export async function openPostgresSidePools(orm: MikroORM, url: string, o: { queries: number; queryTimeoutMs: number; idleInTransactionMs: number }): Promise<PostgresSidePools> {
  const { PostgreSqlConnection } = await import("@mikro-orm/postgresql");
  const side = (max: number, settings: Record<string, number>) => {
    const c = new PostgreSqlConnection(orm.config, { clientUrl: url, driverOptions: pgPoolOptions({ min: 0, max }, settings) }, "read");
    c.connect(); // Makes the Knex pool (no connection yet), which close() destroys.
    return c;
  };
  const idle = { idle_in_transaction_session_timeout: o.idleInTransactionMs };
  const leases = side(PG_LEASE_POOL, idle);
  const queries = side(o.queries, { ...idle, statement_timeout: o.queryTimeoutMs });
  const gate = new QueryGate(o.queries, PG_ACQUIRE_TIMEOUT_MS);
  return {
    leases,
    queries,
    gate,
    close: async () => {
      gate.close();
      await Promise.allSettled([leases.close(true), queries.close(true)]);
    },
  };
}
