/**
 * PostgreSQL's connections: how each pool connects, waits and starts its sessions. A connection keeps
 * TCP alive, so one whose server vanished without a word (a failover, a host gone) fails within about
 * 20 s instead of the kernel's ~15 min; connecting gives up after {@link PG_CONNECT_TIMEOUT_MS}; and a
 * statement waits at most {@link PG_ACQUIRE_TIMEOUT_MS} for a pooled connection (Knex's default was 60 s).
 */

/** Connections of the main pool by default (`NERVE_PG_POOL`): Knex's default, what it was before it was a setting. */
export const PG_POOL = 10;

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
