/**
 * `nerve.admin.status`: every instance answers for itself (a plain subscription, no queue group), so
 * the CLI's `status` gathers all of them within a short window without touching the database.
 */
import { headers, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { encodeJson, errors, errorReply } from "../../contracts/index.js";
import type { Ownership } from "../cluster/index.js";
import type { ConsumerManager } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import type { Database, Repository } from "../persistence/index.js";
import { watch } from "../supervision/index.js";
import { AdminSubjects } from "./admin-subjects.js";
import { INSTANCE_HEADER } from "./wire.js";


/** What one instance says about itself, and what it reads of the shared database, for `nerve status`. */
export interface InstanceStatus {
  instance: string;
  version: string;
  roles: string[];
  started_at: string;
  /** The partitions it holds now. */
  partitions: number[];
  /** Its durable consumers: every one it has a runner for, and those running here now. */
  consumers: { known: string[]; active: string[] };
  /** Committed events not yet acknowledged by JetStream, and how long the oldest has waited. */
  outbox: { pending: number; oldest_age_ms: number | null };
  /**
   * What this instance's outbox relay holds back after a failure: streams it cannot ask or publish to, and
   * aggregates behind a row JetStream refused (absent from instances of an older version).
   */
  relay?: { held_streams: string[]; held_aggregates: number };
  /** Durable timers, those due, and how late the most overdue one is. */
  timers: { pending: number; overdue: number; oldest_overdue_ms: number | null };
  /** Dead letters by consumer (only consumers that have some). */
  dead_letters: Record<string, number>;
  /**
   * The live instances its lease groups' membership names at their last round, itself included (absent
   * on SQLite, and from instances of an older version): `status` waits for each of them, and names those
   * that did not answer.
   */
  members?: string[];
}

/** What an instance reads its status from. */
export interface InstanceStatusSources {
  nc: NatsConnection;
  db: Database;
  /** The outbox's reads (its oldest unpublished event, as the metric reads it). */
  repo: Repository;
  instanceId: string;
  version: string;
  roles: Iterable<string>;
  ownership: Ownership;
  consumers: ConsumerManager;
  /** The outbox relay (what it holds back after a failure). */
  relay?: { heldStreams(): string[]; readonly held: { aggregates: number } };
  /** The live members of its lease groups (PostgreSQL). */
  members?: () => string[];
  logger: Logger;
}

/** Answers {@link AdminSubjects.Status} for this instance until the subscription is unsubscribed. */
export function serveInstanceStatus(s: InstanceStatusSources): Subscription {
  const startedAt = new Date().toISOString();
  return s.nc.subscribe(AdminSubjects.Status, {
    callback: (_err, msg) => {
      if (!msg.reply) return;
      watch(
        s.logger,
        "instance status",
        readInstanceStatus(s, startedAt).then(
          (result) => msg.respond(encodeJson({ ok: true, result })),
          // Said with the instance's id and why, so that `nerve status` names it instead of taking it for absent.
          (err: unknown) => {
            const h = headers();
            h.set(INSTANCE_HEADER, s.instanceId);
            const why = err instanceof Error ? err.message.slice(0, 200) : String(err);
            msg.respond(encodeJson(errorReply(errors.unavailable(`could not read the instance's status: ${why}`, { instance: s.instanceId }))), { headers: h });
          },
        ),
      );
    },
  });
}

async function readInstanceStatus(s: InstanceStatusSources, startedAt: string): Promise<InstanceStatus> {
  const now = Date.now();
  const count = (row: { n?: unknown } | undefined) => Number(row?.n ?? 0);
  const ageOf = (at: unknown) => (typeof at === "string" ? Math.max(0, now - Date.parse(at)) : null);
  // Counts over whole tables (a million timers is a few tens of ms): read as queries, on SQLite off the main thread.
  const [outboxCount, oldestEventAt, timerCount, overdue, dead] = await Promise.all([
    s.db.query<{ n: unknown }>("select count(*) as n from nerve_outbox", [], "get"),
    s.repo.outboxOldestAt(),
    s.db.query<{ n: unknown }>("select count(*) as n from nerve_timers", [], "get"),
    s.db.query<{ n: unknown; oldest: unknown }>("select count(*) as n, min(due_at) as oldest from nerve_timers where due_at <= ?", [new Date(now).toISOString()], "get"),
    s.consumers.deadLetters.countByConsumer(),
  ]);
  return {
    instance: s.instanceId,
    version: s.version,
    roles: [...s.roles],
    started_at: startedAt,
    partitions: s.ownership.held(),
    consumers: { known: [...s.consumers.runners.keys()].sort(), active: s.consumers.active() },
    outbox: { pending: count(outboxCount), oldest_age_ms: oldestEventAt === undefined ? null : Math.max(0, now - oldestEventAt) },
    timers: { pending: count(timerCount), overdue: count(overdue), oldest_overdue_ms: ageOf(overdue?.oldest) },
    dead_letters: Object.fromEntries(dead),
    ...(s.relay ? { relay: { held_streams: s.relay.heldStreams(), held_aggregates: s.relay.held.aggregates } } : {}),
    ...(s.members ? { members: s.members() } : {}),
  };
}
