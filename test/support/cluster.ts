/**
 * A cluster of Nerve processes for the scale-out tests: several real service processes on one
 * PostgreSQL database and one NATS, a client load that retries like a careful client (same
 * Idempotency-Key on timeout, no responders and `unavailable`), and the invariants every fault must
 * keep: each acknowledged command's event once in the event log and once in its stream, per-aggregate
 * versions gap-free and in order, and the stream equal to the log.
 */
import { expect } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack } from "../../contracts/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { PARTITION_GROUP, clusterEntities, leaseName, placeOf } from "../../src/cluster/index.js";
import { CONSUMER_GROUP } from "../../src/consumers/index.js";
import { connect } from "@nats-io/transport-node";
import type { ConnectionOptions } from "@nats-io/nats-core";
import { command } from "./nerve.js";
import { startServiceProcess, type ServiceProcess } from "./service-process.js";
import { startNatsCluster, type NatsCluster } from "./nats-cluster.js";
import { tempPostgres, type TempPostgres } from "./postgres.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `check` holds, polling; throws naming `what` after `ms`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, ms = 15_000, every = 50): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await sleep(every);
  }
}

/** One Nerve instance of a test cluster. */
export interface Instance {
  id: string;
  proc: ServiceProcess;
}

/**
 * Starts the first instance of a test cluster (it makes the schema), then opens the database beside it
 * and waits until the instance holds every partition. `onLine` gets each line it writes (its JSON log).
 */
export async function startFirstInstance(env: Record<string, string>, id: string, readyTimeoutMs?: number, onLine?: (line: string) => void): Promise<{ instance: Instance; db: Database }> {
  const proc = await startServiceProcess({ env: { ...env, NERVE_INSTANCE_ID: id }, readyTimeoutMs, onLine });
  const db = await openDatabase({ url: env.NERVE_DB!, entities: clusterEntities });
  await until(`${id} holds every partition`, async () => (await partitionOwners(db)).size === 64, 20_000);
  return { instance: { id, proc }, db };
}

/** Who holds a durable consumer now, by the database (a live lease only). */
export async function consumerHolder(db: Database, consumer: string): Promise<string | undefined> {
  const row = await db.execute<{ owner: string } | undefined>("select owner from nerve_leases where lease_key = ? and lease_until > now()", [leaseName(CONSUMER_GROUP, consumer)], "get");
  return row?.owner ?? undefined;
}

/**
 * Registers users as a careful client does, 50 at a time: a registration that meets a hand-off (a
 * timeout, no responders, `unavailable`) is retried with its Idempotency-Key. Resolves with what failed.
 */
export async function registerUsers(nc: NatsConnection, users: string[]): Promise<string[]> {
  const failed: string[] = [];
  for (let i = 0; i < users.length; i += 50) {
    await Promise.all(
      users.slice(i, i + 50).map(async (id) => {
        for (let attempt = 1; ; attempt++) {
          const r = await command(nc, "users", "RegisterUser", id, { email: `${id}@example.com`, name: id }, { timeout: 5000, headers: { "Idempotency-Key": `reg-${id}` } }).catch((err: Error) => err);
          if (!(r instanceof Error) && r.body.ok) return;
          if ((r instanceof Error || r.body.error?.code === "unavailable") && attempt < 10) {
            await sleep(200);
            continue;
          }
          failed.push(`${id}: ${r instanceof Error ? String(r) : JSON.stringify(r.body.error)}`);
          return;
        }
      }),
    );
  }
  return failed;
}

/** Kills every instance, then runs each of `then` in order (close a client, the database, drop it, stop NATS). */
export async function tearDownCluster(instances: Iterable<Instance>, ...then: (() => Promise<unknown> | undefined)[]): Promise<void> {
  for (const i of instances) await i.proc.kill9();
  // Every step runs even when one fails (a database that would not drop must not leave the servers running); the first failure is thrown.
  const failures: unknown[] = [];
  for (const step of then) await Promise.resolve().then(step).catch((err: unknown) => void failures.push(err));
  if (failures.length > 0) throw failures[0];
}

/** The tail of every instance's output, for failure messages. */
export const outputsOf = (instances: Iterable<Instance>, tail = 4000): string => [...instances].map((x) => `${x.id}:\n${x.proc.output().slice(-tail)}`).join("\n");

/** Who holds which partition now, by the database (live leases only). */
export async function partitionOwners(db: Database): Promise<Map<number, string>> {
  const rows = await db.execute<{ lease_key: string; owner: string }[]>(
    "select lease_key, owner from nerve_leases where lease_key like 'partitions/%' and owner is not null and lease_until > now()",
    [],
    "all",
  );
  return new Map(rows.map((r) => [Number(r.lease_key.slice("partitions/".length)), r.owner]));
}

/**
 * Starts an instance and waits until every partition is held where rendezvous places it among
 * `expected`: the hand-offs its arrival caused are over. `onLine` gets each line it writes.
 */
export async function startInstance(env: Record<string, string>, id: string, db: Database, expected: string[], onLine?: (line: string) => void): Promise<Instance> {
  const proc = await startServiceProcess({ env: { ...env, NERVE_INSTANCE_ID: id }, onLine });
  let owners = new Map<number, string>();
  await until(
    `the partitions are placed over ${expected.join(", ")}`,
    async () => {
      owners = await partitionOwners(db);
      return Array.from({ length: 64 }, (_, p) => p).every((p) => owners.get(p) === placeOf(leaseName(PARTITION_GROUP, String(p)), expected));
    },
    30_000,
    100,
  ).catch(async (err: Error) => {
    const held = [...owners.values()].reduce((m, o) => m.set(o, (m.get(o) ?? 0) + 1), new Map<string, number>());
    await proc.kill9();
    throw new Error(`${err.message} (held: ${JSON.stringify([...held])}, ${64 - owners.size} unheld)\n${id}:\n${proc.output().slice(-3000)}`);
  });
  return { id, proc };
}

/** What a client was told: an acknowledged command. */
export interface Acked {
  userId: string;
  bio: string;
  eventId: string;
  version: number;
  instance: string;
  at: number;
  /** From the first attempt to the acknowledgement, retries included (ms). */
  took: number;
}

/**
 * A load of UpdateUserProfile commands with unique bios (or, `email`, ChangeUserEmail to unique
 * addresses, kept as `bio`), each retried with its Idempotency-Key until answered.
 */
export function retryingLoad(nc: NatsConnection, users: string[], inFlight: number, tag: string, kind: "profile" | "email" = "profile") {
  const acked: Acked[] = [];
  const gaveUp: string[] = [];
  /** Why attempts failed, by reason (unavailable, timeout, no responders, …). */
  const failures = new Map<string, number>();
  /** When attempts failed (ms since the epoch), why, and for which user: the first 1,000. */
  const timeline: { at: number; why: string; userId: string }[] = [];
  const failed = (why: string, userId: string) => {
    failures.set(why, (failures.get(why) ?? 0) + 1);
    if (timeline.length < 1000) timeline.push({ at: Date.now(), why, userId });
  };
  let retries = 0;
  let stopped = false;
  let n = 0;
  const one = async (userId: string, bio: string): Promise<void> => {
    const key = `k-${bio}`;
    const started = Date.now();
    const deadline = started + 30_000;
    for (;;) {
      try {
        const [type, body] = kind === "email" ? ["ChangeUserEmail", { new_email: bio }] : ["UpdateUserProfile", { profile_data: { bio } }];
        const r = await command(nc, "users", type, userId, body, { timeout: 2000, headers: { "Idempotency-Key": key } });
        if (r.body.ok) {
          acked.push({ userId, bio, eventId: r.body.events[0].event_id, version: r.body.aggregate_version, instance: r.headers["Nerve-Instance"] ?? "", at: Date.now(), took: Date.now() - started });
          return;
        }
        if (r.body.error?.code !== "unavailable") throw new Error(`${userId}: ${r.body.error?.code} ${r.body.error?.message}`);
        failed(`unavailable: ${String(r.body.error?.message).replace(/\d+/g, "N")}`, userId);
      } catch (err) {
        if ((err as Error).message.startsWith(userId)) throw err;
        // A timeout or no responders: a hand-off or a dead owner. Retry with the same key.
        failed((err as Error).message.includes("no responders") ? "no responders" : (err as Error).name === "TimeoutError" || /timeout/i.test((err as Error).message) ? "timeout" : (err as Error).message, userId);
      }
      retries++;
      if (Date.now() > deadline) {
        gaveUp.push(key);
        return;
      }
      await sleep(100);
    }
  };
  /** Answers no retry can change (a bug: `internal`, or a refusal): the test fails on them. */
  const wrong: string[] = [];
  const worker = async (): Promise<void> => {
    while (!stopped) {
      const i = n++;
      await one(users[i % users.length]!, kind === "email" ? `${tag}-${i}@example.com` : `${tag}-${i}`).catch((err: Error) => void wrong.push(err.message));
    }
  };
  const workers = Array.from({ length: inFlight }, worker);
  return {
    acked,
    gaveUp,
    failures,
    timeline,
    wrong,
    get retries() {
      return retries;
    },
    async stop(): Promise<void> {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

/** The event log of users, per aggregate in version order, from the database. */
export async function eventLog(db: Database): Promise<Map<string, { event_id: string; aggregate_version: number; payload: string }[]>> {
  const rows = await db.execute<{ aggregate_id: string; event_id: string; aggregate_version: number; payload: string }[]>(
    "select aggregate_id, event_id, aggregate_version, payload from nerve_events where aggregate_type = ? order by aggregate_id, aggregate_version",
    ["User"],
    "all",
  );
  const out = new Map<string, { event_id: string; aggregate_version: number; payload: string }[]>();
  for (const r of rows) {
    const list = out.get(r.aggregate_id) ?? [];
    list.push({ event_id: r.event_id, aggregate_version: Number(r.aggregate_version), payload: r.payload });
    out.set(r.aggregate_id, list);
  }
  return out;
}

/** Reads the whole EVENTS_USERS stream in order. */
export async function usersStream(nc: NatsConnection): Promise<{ seq: number; envelope: { event_id: string; aggregate_id: string; aggregate_version: number } }[]> {
  const info = await (await jetstreamManager(nc)).streams.info("EVENTS_USERS");
  const out: { seq: number; envelope: { event_id: string; aggregate_id: string; aggregate_version: number } }[] = [];
  if (info.state.messages === 0) return out;
  const messages = await (await jetstream(nc).consumers.get("EVENTS_USERS")).consume({ max_messages: 1000 });
  try {
    for await (const m of messages) {
      const d = decodeMsgPack(m.data);
      if (d.ok) out.push({ seq: m.seq, envelope: d.value as never });
      if (m.seq >= info.state.last_seq) break;
    }
  } finally {
    await messages.close();
  }
  return out;
}

/**
 * The invariants: the log is gap-free per aggregate, every acknowledged command is in it once with the
 * version it was acknowledged at, no command ran twice, and the stream holds exactly the log's events,
 * once each, in aggregate_version order.
 */
export async function assertConsistent(nc: NatsConnection, db: Database, acked: Acked[]): Promise<{ logged: number }> {
  const log = await eventLog(db);
  let logged = 0;
  const byEvent = new Map<string, { userId: string; version: number; bio: string | undefined }>();
  for (const [id, events] of log) {
    expect(events.map((e) => e.aggregate_version), `${id}: gap-free`).toEqual(events.map((_, i) => i + 1));
    for (const e of events) {
      const payload = JSON.parse(e.payload) as { profile_data?: { bio?: string }; new_email?: string };
      byEvent.set(e.event_id, { userId: id, version: e.aggregate_version, bio: payload.profile_data?.bio ?? payload.new_email });
    }
    logged += events.length;
  }
  const missing = acked.filter((a) => byEvent.get(a.eventId)?.version !== a.version || byEvent.get(a.eventId)?.userId !== a.userId);
  expect(missing.slice(0, 5), "acknowledged commands missing from the log").toEqual([]);
  const bios = [...byEvent.values()].map((e) => e.bio).filter((b): b is string => b !== undefined);
  expect(bios.length - new Set(bios).size, "commands that ran twice").toBe(0);

  await until("the stream holds every logged event", async () => (await (await jetstreamManager(nc)).streams.info("EVENTS_USERS")).state.messages >= logged, 30_000, 200);
  const stream = await usersStream(nc);
  const ids = stream.map((s) => s.envelope.event_id);
  expect(ids.length - new Set(ids).size, "events published twice").toBe(0);
  expect(stream.length, "stream = log").toBe(logged);
  const perAggregate = new Map<string, number[]>();
  for (const s of stream) perAggregate.set(s.envelope.aggregate_id, [...(perAggregate.get(s.envelope.aggregate_id) ?? []), s.envelope.aggregate_version]);
  for (const [id, versions] of perAggregate) expect(versions, `${id}: stream order`).toEqual(versions.map((_, i) => i + 1));
  return { logged };
}

/** A client connection to every node of `cluster` that keeps reconnecting through the faults (as Nerve's own does). */
export function connectToCluster(cluster: NatsCluster, opts: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  return connect({ servers: cluster.urls.split(","), noAsyncTraces: true, maxReconnectAttempts: -1, reconnectTimeWait: 250, ...opts });
}

/** The frame of the failover tests on a NATS cluster: what {@link startR3Platform} starts. */
export interface R3Platform {
  cluster: NatsCluster;
  pg: TempPostgres;
  /** The instances' environment: every node's URL, the database, R3 streams, and the settings given. */
  env: Record<string, string>;
  /** The database, opened beside the instances. */
  db: Database;
  /** A client connected to every node ({@link connectToCluster}). */
  nc: NatsConnection;
  /** The instances by id: `a`, and any the test adds. */
  instances: Map<string, Instance>;
  /** Kills the instances, runs `first` in order, then closes the client and the database, drops it and stops NATS. */
  tearDown(...first: (() => Promise<unknown> | undefined)[]): Promise<void>;
}

/**
 * A 3-node NATS cluster and a fresh PostgreSQL database, Nerve's first instance `a` on them with R3 streams
 * (`settings` added to its environment), the database opened beside it and a client on every node. What it
 * started is stopped again when a step fails.
 */
export async function startR3Platform(settings: Record<string, string> = {}): Promise<R3Platform> {
  const [started, made] = await Promise.allSettled([startNatsCluster(3), tempPostgres()]);
  if (started.status === "rejected" || made.status === "rejected") {
    if (started.status === "fulfilled") await started.value.stop().catch(() => undefined);
    if (made.status === "fulfilled") await made.value.drop().catch(() => undefined);
    throw started.status === "rejected" ? started.reason : (made as PromiseRejectedResult).reason;
  }
  const [cluster, pg] = [started.value, made.value];
  const instances = new Map<string, Instance>();
  let db: Database | undefined;
  let nc: NatsConnection | undefined;
  const tearDown = (...first: (() => Promise<unknown> | undefined)[]) =>
    tearDownCluster(instances.values(), ...first, () => nc?.close(), () => db?.close(), () => pg.drop(), () => cluster.stop());
  try {
    const env = { NATS_URL: cluster.urls, NERVE_DB: pg.url, NERVE_STREAM_REPLICAS: "3", NERVE_HTTP_PORT: "0", LOG_LEVEL: "warn", ...settings };
    const first = await startFirstInstance(env, "a", 40_000);
    instances.set("a", first.instance);
    db = first.db;
    nc = await connectToCluster(cluster);
    return { cluster, pg, env, db, nc, instances, tearDown };
  } catch (err) {
    await tearDown().catch(() => undefined);
    throw err;
  }
}
