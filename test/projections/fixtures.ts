/** Fixtures of the projection tests: contract-valid envelopes, a real SQLite read-model database, a fake command bus. */
import { pino } from "pino";
import { v7 as uuidv7 } from "uuid";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { Contexts, EventContexts, EventSchemas, EventVersions, Headers, NerveError, encodeMsgPack, type CommandSuccess, type EnvelopeBase, type EventType, type PayloadOf } from "../../contracts/index.js";
import { EventHandler, consumerEntities, txOf, type Subscriber, type Tx } from "../../src/consumers/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import type { Logger } from "../../src/log/index.js";
import { createSubscribers, readModelEntities, type SubscriberDeps } from "../../src/projections/index.js";
import type { CommandBus, CommandRequest } from "../../src/runtime/index.js";
import { onTestFinished } from "vitest";
import { tempSqlitePath } from "../support/tmp.js";
import { tempPostgres } from "../support/postgres.js";

/** Publishes `e` into its stream as the relay does for the consumers: on its subject, MessagePack, with its Event-Type header. */
export async function publishEvent(nc: NatsConnection, e: EnvelopeBase): Promise<void> {
  const h = natsHeaders();
  h.set(Headers.EventType, e.event_type);
  await jetstream(nc).publish(`events.${EventContexts[e.event_type as EventType]}.${e.event_type}.${e.aggregate_id}`, encodeMsgPack(e), { headers: h });
}

/** A silent logger for subscribers under test. */
export const quiet = pino({ level: "silent" });

let clock = Date.parse("2026-03-01T09:00:00.000Z");

/** A contract-valid envelope; `at` defaults to a clock that moves one second per event. */
export function envelope<T extends EventType>(
  type: T,
  aggregateId: string,
  version: number,
  payload: PayloadOf<T>,
  opts: { at?: string; correlation_id?: string } = {},
): EnvelopeBase {
  const e = {
    event_id: uuidv7(),
    event_type: type,
    event_version: EventVersions[type],
    occurred_on: opts.at ?? new Date((clock += 1000)).toISOString(),
    aggregate_type: Contexts[EventContexts[type]].aggregate,
    aggregate_id: aggregateId,
    aggregate_version: version,
    correlation_id: opts.correlation_id ?? `corr-${aggregateId}`,
    causation_id: null,
    payload,
  };
  return EventSchemas[type].parse(e) as EnvelopeBase;
}

/** A stand-in for the command bus: records commands, serves aggregate states, fails on demand. */
export class FakeBus {
  readonly calls: CommandRequest[] = [];
  /** Commands in the order they finished. */
  readonly finished: string[] = [];
  /** How long a command takes, in ms. */
  latency: (req: CommandRequest) => number = () => 0;
  readonly states = new Map<string, { state: unknown; version: number }>();
  /** Decides a command's failure; undefined lets it succeed. */
  fail: (req: CommandRequest) => Error | undefined = () => undefined;

  /** Sets an aggregate's state. */
  set(type: string, id: string, state: unknown, version = 1): void {
    this.states.set(`${type}/${id}`, { state, version });
  }

  /** The state set for an aggregate, or none. */
  async readState(type: string, id: string) {
    return this.states.get(`${type}/${id}`) ?? { state: null, version: 0 };
  }

  /** As the real bus's dispatch: every aggregate is local here. */
  dispatch(req: CommandRequest): Promise<CommandSuccess> {
    return this.execute(req);
  }

  /** Records the command, waits its latency, then fails or succeeds. */
  async execute(req: CommandRequest): Promise<CommandSuccess> {
    this.calls.push(req);
    const ms = this.latency(req);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    this.finished.push(req.type);
    const err = this.fail(req);
    if (err) throw err;
    const key = `${req.context === "courses" ? "Course" : "AccessRecord"}/${req.aggregateId}`;
    const current = this.states.get(key);
    const version = (current?.version ?? 0) + 1;
    // Enough of the Course aggregate for policy-sync: the move is visible to the next read.
    if (req.type === "ChangeCoursePolicy" && current) this.states.set(key, { state: { ...(current.state as object), policy_id: (req.body as any).new_policy_id }, version });
    return { ok: true, aggregate_id: req.aggregateId, aggregate_version: version, events: [] };
  }

  /** This fake as the command bus type. */
  get bus(): CommandBus {
    return this as unknown as CommandBus;
  }
}

/** A NerveError of a code, as an aggregate would throw it. */
export const nerveError = (code: NerveError["code"]) => new NerveError(code, `${code} for the test`);

/** A real SQLite file with every read model, and the subscribers wired to a fake bus. */
export interface ReadModels {
  db: Database;
  tx: Tx;
  bus: FakeBus;
  deps: SubscriberDeps;
  subscriber(name: string): Subscriber;
  /** Handles events through the inbox-guarded handler, as the runner does, one by one. */
  handle(name: string, ...events: EnvelopeBase[]): Promise<string[]>;
  /** Rows of a table, ordered by `order`. */
  rows(table: string, order: string): Promise<any[]>;
  close(): Promise<void>;
}

/**
 * {@link openReadModels} on a temporary SQLite file or, with `pg`, on a temporary PostgreSQL database; for
 * one test: closed (and the database dropped) when it ends.
 */
export async function readModelsFor(pg: boolean): Promise<ReadModels> {
  const db = pg ? await tempPostgres() : undefined;
  try {
    const m = await openReadModels({ url: db?.url });
    onTestFinished(async () => {
      await m.close().catch(() => undefined);
      await db?.drop().catch(() => undefined);
    });
    return m;
  } catch (err) {
    await db?.drop().catch(() => undefined);
    throw err;
  }
}

/** Opens a fresh read-model database — a temporary SQLite file, or the empty database at `url` — and runs every subscriber's setup. */
export async function openReadModels(opts: { defaultPolicyId?: string; url?: string; logger?: Logger } = {}): Promise<ReadModels> {
  const file = opts.url === undefined ? await tempSqlitePath() : undefined;
  const db = await openDatabase({ url: opts.url ?? `sqlite:${file!.path}`, entities: [...consumerEntities, ...readModelEntities] });
  const bus = new FakeBus();
  const deps: SubscriberDeps = { bus: bus.bus, db, logger: opts.logger ?? quiet, defaultPolicyId: opts.defaultPolicyId };
  const subscribers = new Map(createSubscribers(deps).map((s) => [s.name as string, s]));
  const tx = txOf(db);
  // As ConsumerManager.start runs them: one schema change (on PostgreSQL, a transaction under the schema lock).
  await db.schemaChange(async (execute) => {
    for (const s of subscribers.values()) await s.setup?.({ dialect: db.dialect, execute });
  });
  const handlers = new Map([...subscribers].map(([n, s]) => [n, new EventHandler(db, s)]));
  return {
    db,
    tx,
    bus,
    deps,
    subscriber: (name) => subscribers.get(name)!,
    async handle(name, ...events) {
      const out: string[] = [];
      for (const e of events) out.push(await handlers.get(name)!.handle(e));
      return out;
    },
    rows: (table, order) => tx.execute(`select * from ${table} order by ${order}`, [], "all"),
    async close() {
      await db.close();
      await file?.cleanup();
    },
  };
}
