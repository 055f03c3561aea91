/** Composition of the service: database, actors, outbox relay, NATS API — and their ordered shutdown. */
import { inspect } from "node:util";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { ConsumerAdmin, addAdminEndpoints, remoteCommands, serveInstanceStatus, startApi, type Api } from "../api/index.js";
import { aggregateModules, timerKinds } from "../aggregates/index.js";
import { CONSUMER_GROUP, ConsumerManager, InboxPrune, consumerEntities } from "../consumers/index.js";
import { startGateway, type Gateway } from "../gateway/index.js";
import { createSubscribers, projectionQueries, readModelEntities } from "../projections/index.js";
import type { Config } from "../config/index.js";
import type { Logger } from "../log/index.js";
import { connectNats, ensureExternalConsumers, ensureStreams, trackConnectivity, withoutCredentials } from "../nats/index.js";
import { OutboxRelay } from "../outbox/index.js";
import { GroupCommitWriter, IdempotencyPrune, Repository, openDatabase, type Database, type DriverLog } from "../persistence/index.js";
import { ActorSystem, CommandBus } from "../runtime/index.js";
import { TimerService } from "../timers/index.js";
import { reportFailure, sayingAtMostEvery, watch } from "../supervision/index.js";
import { Leases, NoOwnership, PartitionLeases, SoleOwnership, checkFences, clusterEntities, partitionOf, type Ownership } from "../cluster/index.js";
import { registerServiceMetrics } from "./metrics.js";
import { ShutdownSteps } from "./shutdown-steps.js";
import { registerInboxPruneMetrics } from "./inbox-prune-metrics.js";
import { registerTimerMetrics } from "./timer-metrics.js";
import { LatencyMetrics } from "./latency-metrics.js";
import { startTracing } from "../tracing/index.js";
import { aggregateQueries } from "./queries.js";

/** A running Nerve. */
export interface Nerve {
  readonly db: Database;
  readonly nc: NatsConnection;
  readonly system: ActorSystem;
  readonly writer: GroupCommitWriter;
  readonly relay: OutboxRelay;
  readonly bus: CommandBus;
  readonly timers: TimerService;
  readonly consumers: ConsumerManager;
  /** Forgets projections' inbox rows past NERVE_INBOX_RETENTION_DAYS, every ten minutes; absent when that is off. */
  readonly inboxPrune: InboxPrune | undefined;
  /** The command and query API: absent without the `commands` role. */
  readonly api: Api | undefined;
  /** Health, readiness, metrics — and learners' WebSockets with the `gateway` role. */
  readonly gateway: Gateway;
  /** Which partitions this instance owns: all of them on SQLite, its leases on PostgreSQL. */
  readonly ownership: Ownership;
  /** Ordered shutdown: stop taking commands, drain mailboxes, flush the outbox, drain consumers, close NATS and the database. */
  stop(): Promise<void>;
}

/** The version reported by the service API. */
export const NERVE_VERSION = "0.1.0";

/** Where an instance says it released a partition (core NATS, a nudge only: the leases decide). */
export const RELEASED_SUBJECT = "nerve.cluster.released";

/**
 * How long the relay's look-ups of what a stream already holds may take. During a stream leader's
 * election only a leader answers them, so a short wait lets the relay notice the new leader soon.
 */
const VERIFY_TIMEOUT_MS = 1500;

/** How often projections' inbox rows past NERVE_INBOX_RETENTION_DAYS are looked for (one pass at a time). */
const INBOX_PRUNE_EVERY_MS = 10 * 60_000;

/** Longest a group commit waits for the outbox relay's backlog to shrink before it commits anyway. */
const ADMISSION_MAX_WAIT_MS = 1000;

/** What benchmarks may change of a start (never set by the service itself). */
export interface NerveOverrides {
  /**
   * `sole`: own every partition without leases or fence checks even on PostgreSQL — unsafe beside
   * another instance; it exists to measure what fencing and routing cost.
   */
  ownership?: "sole";
}

/** Starts the whole service in this process. */
export async function startNerve(config: Config, logger: Logger, overrides: NerveOverrides = {}): Promise<Nerve> {
  const shared = !config.NERVE_DB.startsWith("sqlite:");
  const entities = [...consumerEntities, ...readModelEntities, ...(shared ? clusterEntities : [])];
  // The service takes a SQLite file for itself: a second instance on it refuses to start, naming PostgreSQL.
  // A failed WAL checkpoint is retried every second: said at most once a minute, with how many so far.
  let checkpointFailures = 0;
  const sayCheckpointFailure = sayingAtMostEvery();
  const onCheckpointFailure = (err: unknown) => {
    checkpointFailures++;
    if (!sayCheckpointFailure()) return;
    logger.warn({ err, failures_so_far: checkpointFailures }, "a WAL checkpoint failed; retried every second (said at most once a minute): the WAL grows until one succeeds");
  };
  const db = await openDatabase({ url: config.NERVE_DB, sqliteSynchronous: config.NERVE_SQLITE_SYNC, pgPool: config.NERVE_PG_POOL, pgQueries: config.NERVE_PG_QUERIES, pgQueryTimeoutMs: config.NERVE_PG_QUERY_TIMEOUT_MS, entities, exclusiveInstance: true, onCheckpointFailure, driverLog: driverLogOf(logger) });
  // The queries keep their timeout either way; a warning for what else was dropped: every session's
  // idle_in_transaction_session_timeout, which the takeover of a frozen owner's partitions relies on.
  if (db.queryTimeoutSetBy === "transaction") {
    logger.warn("PostgreSQL's sessions came without Nerve's startup options (a pooler in transaction mode that ignores `options`?): each read-model query and lease statement sets its statement_timeout or lock_timeout in a transaction of its own, and the main pool's idle_in_transaction_session_timeout is the role's default (deploy/postgres/README.md)");
  }
  const repo = new Repository(db);
  let nc: NatsConnection | undefined;
  let jsm: JetStreamManager;
  try {
    nc = await connectNats({ url: config.NATS_URL, user: config.NATS_USER, password: config.NATS_PASSWORD, creds: config.NATS_CREDS }, logger);
    // ensureStreams makes the first JetStream call, waiting out a stream leader's election (4-9 s on 2.9).
    jsm = await jetstreamManager(nc, { checkAPI: false });
    await ensureStreams(jsm, { replicas: config.NERVE_STREAM_REPLICAS, logger });
    // External subscribers read through durables of their own, never through Nerve's (CONTRACT.md §2).
    await ensureExternalConsumers(jsm, config.NERVE_EXTERNAL_CONSUMERS, logger);
  } catch (err) {
    await nc?.close();
    await db.close();
    throw err;
  }
  // An instance cut off from NATS (but not from the database) sits its leases out, for the others to take.
  const connectivity = trackConnectivity(nc, logger);
  const natsUsable = () => connectivity.usable();
  // The relay is made after the writer (it deletes through it); admission reaches it when asked.
  let relay: OutboxRelay | undefined;
  // Made after the writer too (their batches go through its worker); their backlog is the admission's second part.
  let projectionRoom: ((maxWaitMs: number) => Promise<void> | undefined) | undefined;
  const backlogLimit = 2 * config.NERVE_RELAY_WINDOW;
  const instanceId = config.NERVE_INSTANCE_ID;
  // Filled below, once the parts a hand-off drains exist.
  let drainPartition: (partition: number) => Promise<void> = async () => {};
  const roles = config.NERVE_ROLES;
  const commandsRole = roles.has("commands");
  // Without the commands role an instance owns nothing: its process managers send commands to the owners.
  const ownership: Ownership & { start?(): Promise<void>; stop?(): Promise<void>; wake?(): void } = !commandsRole
    ? new NoOwnership(instanceId)
    : shared && overrides.ownership !== "sole"
    ? new PartitionLeases({ db, instanceId, logger: logger.child({ component: "leases" }), drain: (p) => drainPartition(p), released: () => conn.publish(RELEASED_SUBJECT), eligible: natsUsable })
    : new SoleOwnership(instanceId);
  // Off unless an OTLP endpoint is configured; export failures are counted and logged, the spans dropped.
  const tracing = await startTracing({
    endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT,
    tracesEndpoint: config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    instanceId,
    version: NERVE_VERSION,
    onError: (err) => reportFailure(logger, "tracing export", err, "exporting spans failed; they are dropped"),
  });
  if (tracing) logger.info({ url: withoutCredentials(tracing.url) }, "tracing: exporting spans over OTLP/HTTP");
  const latency = new LatencyMetrics();
  const writer = new GroupCommitWriter(db, {
    observe: latency.transaction,
    observeWorker: latency.worker,
    admission: () => relay?.room(backlogLimit, ADMISSION_MAX_WAIT_MS) ?? projectionRoom?.(ADMISSION_MAX_WAIT_MS),
    fenceCheck: ownership.fenced ? (exec, fences) => checkFences(exec, instanceId, fences) : undefined,
    sqliteWriter: config.NERVE_SQLITE_WRITER,
    logger: logger.child({ component: "writer" }),
  });
  const system = new ActorSystem({
    load: (type, id) => repo.loadSnapshot(type, id),
    mailboxSize: config.NERVE_MAILBOX_SIZE,
    maxActors: config.NERVE_MAX_ACTORS,
    idleMs: config.NERVE_ACTOR_IDLE_MS,
  });
  const bus = new CommandBus({ system, writer, repo, modules: aggregateModules, logger, ownership, remote: remoteCommands(nc), stages: latency.stages });
  const inPartition = (p: number) => (aggregateId: string) => partitionOf(aggregateId) === p;
  // A lost partition's actors are forgotten: its next owner may change those aggregates.
  ownership.on("lost", (p) => watch(logger, "forget actors", system.forget(inPartition(p))));
  drainPartition = async (p) => {
    await system.forget(inPartition(p), config.NERVE_SHUTDOWN_MS);
    // What was submitted until now, the partition's last writes among them; not the writes of the
    // partitions kept, which under load never stop coming (flushed() waited for those too: never ended).
    await writer.settled();
    await relay!.flushPartition(p, config.NERVE_SHUTDOWN_MS);
  };
  const relayJsm = await jetstreamManager(nc, { checkAPI: false, timeout: VERIFY_TIMEOUT_MS });
  relay = new OutboxRelay({ repo, js: jetstream(nc), jsm: relayJsm, logger, window: config.NERVE_RELAY_WINDOW, deleter: writer, ownership, publishAck: latency.acked });
  writer.on("committed", (rows) => relay.offer(rows));
  writer.on("error", (err) => reportFailure(logger, "group commit", err, "group commit failed outside a write (deleting published outbox rows); retrying"));
  const timers = new TimerService({ db, bus, logger, kinds: timerKinds, ownership, writer: writer.sqliteWorker });
  if (commandsRole) {
    relay.start();
    timers.start();
  }
  const deps = { bus, db, logger, defaultPolicyId: config.NERVE_DEFAULT_POLICY_ID };
  const subscribers = createSubscribers(deps);
  // Several instances: each durable consumer runs on one of them at a time, under a lease of its own.
  const consumerLeases = shared
    ? new Leases({ db, instanceId, logger: logger.child({ component: "leases" }), group: CONSUMER_GROUP, keys: subscribers.map((s) => s.name), drain: (name): Promise<void> => consumers.handOff(name), released: () => conn.publish(RELEASED_SUBJECT), eligible: natsUsable })
    : undefined;
  const consumers = new ConsumerManager({ db, js: jetstream(nc), jsm, logger, subscribers, leases: consumerLeases, handleTime: latency.handled, batchWriter: writer.sqliteWorker, backlogLimit: config.NERVE_CONSUMER_LAG_LIMIT });
  projectionRoom = (maxWaitMs) => consumers.room(maxWaitMs);
  const idempotencyPrune = new IdempotencyPrune({ db, writer: writer.sqliteWorker, retentionMs: 24 * 3600_000, keep: 1000 });
  const prune = setInterval(() => {
    // Housekeeping runs once across instances: on the holder of partition 0.
    if (!ownership.fence(0)) return;
    void idempotencyPrune
      .run()
      .then((r) => r.deleted > 0 && logger.info({ ...r }, "pruned idempotency keys"))
      .catch((err) => reportFailure(logger, "idempotency prune", err, "pruning idempotency keys failed; trying again at the next tick"));
  }, 10 * 60_000);
  prune.unref();
  // Projections' inbox rows past the horizon, each consumer's on the instance that holds it (off: kept).
  const inboxPrune =
    config.NERVE_INBOX_RETENTION_DAYS > 0
      ? new InboxPrune({ db, writer: writer.sqliteWorker, subscribers, horizonMs: config.NERVE_INBOX_RETENTION_DAYS * 86_400_000, runsHere: (name) => consumers.runsHere(name) })
      : undefined;
  const inboxPruneTimer = inboxPrune && setInterval(() => {
    void inboxPrune
      .run()
      .then((r) => {
        const deleted = Object.values(r.deleted).reduce((a, b) => a + b, 0);
        if (deleted > 0) logger.info({ deleted: r.deleted, slices: r.slices, ms: Math.round(r.ms) }, "pruned consumer inbox rows");
      })
      .catch((err) => reportFailure(logger, "consumer inbox prune", err, "pruning consumer inbox rows failed; trying again at the next tick"));
  }, INBOX_PRUNE_EVERY_MS);
  inboxPruneTimer?.unref();
  let api: Api | undefined;
  let gateway: Gateway | undefined;
  // Every instance, whatever its roles, answers the CLI's `status` for itself.
  const members = ownership instanceof PartitionLeases || consumerLeases ? () => [...new Set([...(ownership instanceof PartitionLeases ? ownership.leases.members() : []), ...(consumerLeases?.members() ?? [])])].sort() : undefined;
  const statusAnswers = serveInstanceStatus({ nc, db, repo, instanceId, version: NERVE_VERSION, roles, ownership, consumers, relay, members, logger });
  // And its own replays and dead-letter retries, forwarded to it by whichever instance the service's request reached.
  const consumerAdmin = new ConsumerAdmin({ nc, consumers, instanceId, logger });
  const consumerAnswers = consumerAdmin.serve();

  let stopping: Promise<void> | undefined;
  const conn = nc;
  // Another instance released a partition: this one may be where it belongs, so look now, not in a second.
  const nudges = nc.subscribe(RELEASED_SUBJECT, {
    callback: () => {
      ownership.wake?.();
      consumerLeases?.wake();
    },
  });
  const stop = async (): Promise<void> => {
    // Each step on its own and bounded (src/app/shutdown-steps.ts): one that fails is logged and the rest
    // still run; one that does not end in time (an actor's commit waiting for a lock) is left running and the
    // leases are released all the same.
    const steps = new ShutdownSteps(logger, config.NERVE_SHUTDOWN_MS);
    clearInterval(prune);
    clearInterval(inboxPruneTimer);
    statusAnswers.unsubscribe();
    consumerAnswers.unsubscribe();
    // A pass in progress ends after its slice: no background deletes beside the drain.
    await steps.drain("consumer inbox prune", () => inboxPrune?.stop());
    await steps.drain("gateway", () => gateway?.stop());
    await steps.drain("api", () => api?.stop());
    await steps.drain("timers", () => timers.stop());
    await steps.drain("actors", () => system.drain());
    await steps.drain("writes", () => writer.flushed());
    await steps.drain("outbox", async () => {
      if (!(await relay.flush(steps.drainLeft()))) logger.warn("outbox not empty at shutdown; the next start publishes the rest");
    });
    await steps.drain("relay", () => relay.stop());
    await steps.drain("writes", () => writer.flushed());
    nudges.unsubscribe();
    await steps.release("partitions", () => ownership.stop?.());
    // The partitions are released: tell the others now rather than at their next round, and serve
    // (`unavailable`) each partition's subscription until its next owner has one.
    if (ownership.fenced) conn.publish(RELEASED_SUBJECT);
    await steps.release("partition subscriptions", () => api?.releasePartitions());
    await steps.release("consumers", () => consumers.stop());
    await steps.release("idempotency prune", () => idempotencyPrune.stop());
    system.close();
    await steps.release("nats", () => conn.drain().catch(() => conn.close()));
    // Last: the consumers' process managers may have committed until they stopped.
    await steps.release("writer", () => writer.close());
    // A writer left running may still commit (SQLite's write worker, a PostgreSQL commit waiting for a lock):
    // the database stays open under it — closing it gave up SQLite's instance lock while the worker wrote.
    if (steps.overran("writer")) logger.warn("the database is left open: its writer did not end");
    else await steps.release("database", () => db.close());
    // The last spans go out now, within what is left of the shutdown's bound.
    if (tracing) await Promise.race([tracing.shutdown().catch((err) => logger.warn({ err }, "flushing spans failed")), new Promise((r) => setTimeout(r, Math.max(1000, steps.left())).unref())]);
    const outcome = steps.outcome();
    if (outcome) throw outcome;
    logger.info("nerve stopped");
  };

  try {
    // The subscribers' DDL before the partitions: it may wait up to a minute for another instance's schema
    // change and build indexes, and an instance that had joined meanwhile was handed its share of the
    // partitions by the others and served none of them (the API starts after the consumers).
    if (roles.has("consumers")) await consumers.setup();
    await ownership.start?.();
    if (roles.has("consumers")) await consumers.start();
    if (commandsRole) {
      api = await startApi({ nc, bus, queries: { ...aggregateQueries(bus), ...projectionQueries(deps) }, logger, version: NERVE_VERSION, instanceId, ownership, observe: { command: latency.command, query: latency.query }, admission: { requests: config.NERVE_MAX_IN_HAND, bytes: config.NERVE_MAX_IN_HAND_BYTES } });
      addAdminEndpoints(api.service, consumers, consumerAdmin, logger);
    }
    const servingApi = api;
    gateway = await startGateway({
      websocket: roles.has("gateway"),
      nc,
      apiServing: servingApi ? () => servingApi.serving() : undefined,
      port: config.NERVE_HTTP_PORT,
      jwtSecret: config.jwtSecret,
      jwks: config.NERVE_JWT_JWKS,
      jwtIssuer: config.NERVE_JWT_ISSUER,
      jwtAudience: config.NERVE_JWT_AUDIENCE,
      logger: logger.child({ component: "gateway" }),
      devTokens: config.NERVE_DEV_TOKENS,
      retention: { maxEvents: config.NERVE_GATEWAY_BUFFER_EVENTS },
      maxSocketsPerUser: config.NERVE_GATEWAY_SOCKETS_PER_USER,
      maxSockets: config.NERVE_GATEWAY_MAX_SOCKETS || undefined,
    });
    registerServiceMetrics(gateway.metrics.registry, {
      api, system, writer, relay, repo, consumers, ownership, checkpoints: db.checkpoints, queries: db.queries, queryThreadHeap: db.queryThreadHeap, queryGate: db.queryGate,
      leases: { partitions: ownership instanceof PartitionLeases ? ownership.leases.stats : undefined, consumers: consumerLeases?.stats },
    });
    latency.register(gateway.metrics.registry);
    if (inboxPrune) registerInboxPruneMetrics(gateway.metrics.registry, inboxPrune.stats);
    registerTimerMetrics(gateway.metrics.registry, timers);
  } catch (err) {
    // A part that cannot start (a taken HTTP port, say) must not leave the others running.
    await stop().catch(() => undefined);
    throw err;
  }
  // Where SQLite's commits run (NERVE_SQLITE_WRITER, `auto` resolved by the cores): the write thread, inline on the main thread, or the main connection.
  const sqliteWriter = writer.sqliteWorker ? (writer.sqliteWorker.where === "thread" ? "worker" : "inline") : db.sqliteFile ? "main" : undefined;
  logger.info({ db: db.dialect, ...(sqliteWriter && { sqlite_writer: sqliteWriter }), http_port: gateway.port, instance: instanceId, roles: [...roles] }, "nerve started");
  return { db, nc, system, writer, relay, bus, timers, consumers, inboxPrune, api, gateway, ownership, stop: () => (stopping ??= stop()) };
}

/** Knex's own messages as the service's log lines (it wrote them to the console, outside the JSON log). */
function driverLogOf(logger: Logger): DriverLog {
  const log = logger.child({ component: "knex" });
  const text = (m: unknown) => (typeof m === "string" ? m : inspect(m, { depth: 3, breakLength: Infinity }));
  return {
    warn: (m) => log.warn(text(m)),
    error: (m) => log.error(text(m)),
    deprecate: (m) => log.warn(text(m)),
    debug: (m) => log.debug(text(m)),
  };
}
