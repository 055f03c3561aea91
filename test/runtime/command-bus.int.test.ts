import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { domainEvent, isNerveError } from "../../contracts/index.js";
import { usersModule } from "../../src/aggregates/index.js";
import { createLogger } from "../../src/log/index.js";
import { GroupCommitWriter, Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { ActorSystem, CommandBus, type AggregateModule } from "../../src/runtime/index.js";
import { EventEmitter } from "node:events";
import type { Fence, Ownership } from "../../src/cluster/index.js";
import { validTraceparent } from "../../src/tracing/index.js";
import { captureLog, tempSqlitePath } from "../support/index.js";

let db: Database;
let cleanup: () => Promise<void>;
let bus: CommandBus;
let system: ActorSystem;
let writer: GroupCommitWriter;
let explode = false;
let factsFail: Error | undefined;

// The real User module, with a decider that can be made to throw a bug (not a NerveError).
const buggyUsers: AggregateModule = {
  ...usersModule,
  // Facts whose read can be made to fail as a storage outage does (PostgreSQL restarting: 57P01).
  async facts(command, state, lookups) {
    if (factsFail) throw factsFail;
    return usersModule.facts!(command, state, lookups);
  },
  decider: {
    ...usersModule.decider,
    decide(command, state, facts) {
      if (explode && command.type === "UpdateUserProfile") throw new TypeError("cannot read properties of undefined");
      return usersModule.decider.decide(command, state, facts);
    },
  },
};

const log = captureLog("error");

beforeAll(async () => {
  const tmp = await tempSqlitePath();
  cleanup = tmp.cleanup;
  db = await openDatabase({ url: `sqlite:${tmp.path}` });
  const repo = new Repository(db);
  writer = new GroupCommitWriter(db);
  system = new ActorSystem({ load: (t, id) => repo.loadSnapshot(t, id), mailboxSize: 64, maxActors: 1000, idleMs: 60_000 });
  bus = new CommandBus({ system, writer, repo, modules: [buggyUsers], logger: log.logger });
});
afterAll(async () => {
  system.close();
  await db.close();
  await cleanup();
});

const register = (id: string) => bus.execute({ context: "users", type: "RegisterUser", aggregateId: id, body: { email: `${id}@example.com`, name: id } });
const update = (id: string, bio: string) => bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: id, body: { profile_data: { bio } } });

describe("CommandBus on a real SQLite file", () => {
  it("stores snapshot, events and outbox rows of one command in one transaction", async () => {
    const r = await register("a");
    expect(r.aggregate_version).toBe(1);
    expect(await bus.repo.loadSnapshot("User", "a")).toMatchObject({ version: 1 });
    expect((await bus.repo.history("User", "a")).map((e) => e.event_id)).toEqual([r.events[0]!.event_id]);
    expect((await bus.repo.pendingOutbox(100)).map((o) => o.event_id)).toContain(r.events[0]!.event_id);
  });

  it("groups concurrent writes from many actors into few transactions", async () => {
    const before = writer.stats.transactions;
    await Promise.all(Array.from({ length: 200 }, (_, i) => register(`g${i}`)));
    expect(writer.stats.transactions - before).toBeLessThan(20);
    expect(writer.stats.largestBatch).toBeGreaterThan(10);
  });

  it("fails a command whose decider has a bug with internal, reloads that actor, and leaves others alone", async () => {
    await register("b");
    explode = true;
    onTestFinished(() => void (explode = false));
    const err = await update("a", "boom").catch((e) => e);
    expect(isNerveError(err, "internal")).toBe(true);
    // Logged once, with the correlation id the reply names (CONTRACT.md §3): the command's id, without a header.
    const logged = log.errors().filter((l) => l.msg === "decider failed");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ command: "UpdateUserProfile", aggregate_id: "a", correlation_id: err.details.correlation_id, command_id: err.details.correlation_id });
    expect(err.details.correlation_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    const named = await bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: "a", body: { profile_data: { bio: "boom" } }, correlationId: "support-ticket-7" }).catch((e) => e);
    expect(named.details).toEqual({ correlation_id: "support-ticket-7" });
    expect(log.errors().filter((l) => l.msg === "decider failed").at(-1)).toMatchObject({ correlation_id: "support-ticket-7" });
    explode = false;
    expect((await register("c")).aggregate_version).toBe(1);
    expect((await update("a", "fine")).aggregate_version).toBe(2);
    expect((await bus.view("users", "a")) as { version: number }).toMatchObject({ version: 2 });
  });

  it("answers a command whose facts met a storage outage unavailable (retry), not internal, and logs no bug", async () => {
    await register("f");
    factsFail = Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
    onTestFinished(() => void (factsFail = undefined));
    const bugsBefore = log.errors().filter((l) => l.msg === "decider failed").length;
    const err = await bus.execute({ context: "users", type: "ChangeUserEmail", aggregateId: "f", body: { new_email: "f2@example.com" } }).catch((e) => e);
    expect(isNerveError(err, "unavailable"), String(err)).toBe(true);
    expect(err.message).toMatch(/storage unavailable/);
    expect(log.errors().filter((l) => l.msg === "decider failed")).toHaveLength(bugsBefore);
    // A failure that is no outage is still a bug.
    factsFail = new TypeError("x is undefined");
    expect(isNerveError(await bus.execute({ context: "users", type: "ChangeUserEmail", aggregateId: "f", body: { new_email: "f2@example.com" } }).catch((e) => e), "internal")).toBe(true);
    factsFail = undefined;
    expect((await bus.execute({ context: "users", type: "ChangeUserEmail", aggregateId: "f", body: { new_email: "f2@example.com" } })).aggregate_version).toBe(2);
  });

  it("never lets a stale writer overwrite a newer state: it answers unavailable and reloads", async () => {
    await update("b", "v2");
    // Another writer (another instance) moves the stored snapshot on behind this actor's back.
    await db.connection.execute("update nerve_snapshots set version = version + 1, base_version = version where aggregate_type = 'User' and aggregate_id = 'b'");
    const err = await update("b", "v3").catch((e) => e);
    expect(isNerveError(err, "unavailable")).toBe(true);
    expect((await bus.repo.loadSnapshot("User", "b"))!.version).toBe(3);
    expect((await update("b", "v4")).aggregate_version).toBe(4);
  });
});

describe("CommandBus with tracing off: every command's events carry a trace context (CONTRACT.md §2)", () => {
  const traceOf = async (eventId: string) => {
    const row = (await bus.repo.pendingOutbox(10_000)).find((o) => o.event_id === eventId);
    return { traceparent: row?.traceparent, tracestate: row?.tracestate };
  };

  it("starts a new, unsampled root trace for a command without one: a different one per command", async () => {
    const [first, second] = await Promise.all([register("t1"), register("t2")]);
    const one = await traceOf(first.events[0]!.event_id);
    const two = await traceOf(second.events[0]!.event_id);
    for (const t of [one, two]) {
      expect(validTraceparent(t.traceparent ?? undefined)).toBe(t.traceparent);
      expect(t.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(t.tracestate).toBeNull();
    }
    expect(one.traceparent!.slice(3, 35)).not.toBe(two.traceparent!.slice(3, 35));
  });

  it("and for an internal operation (a durable timer's)", async () => {
    await register("t3");
    const r = await bus.executeInternal("users", "t3", "test-timer", () => [domainEvent("UserProfileUpdated", { user_id: "t3", profile_data: { bio: "timed" } })]);
    expect((await traceOf(r.events[0]!.event_id)).traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  it("keeps the trace context a command came with, tracestate too", async () => {
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const r = await bus.execute({ context: "users", type: "RegisterUser", aggregateId: "t4", body: { email: "t4@example.com", name: "t4" }, traceparent, tracestate: "a=b" });
    expect(await traceOf(r.events[0]!.event_id)).toEqual({ traceparent, tracestate: "a=b" });
  });
});

describe("CommandBus when the partition moves while a command runs (CONTRACT.md §8: a former owner never replies)", () => {
  // Ownership whose epoch a test moves on, as a takeover by another instance (and a retake) would.
  let epoch = 1;
  let held = true;
  const ownership = Object.assign(new EventEmitter(), {
    instanceId: "former",
    fenced: true,
    fence: (partition: number): Fence | undefined => (held ? { partition, epoch } : undefined),
    held: () => (held ? Array.from({ length: 64 }, (_, p) => p) : []),
  }) as unknown as Ownership;
  // The User module, with facts that take as long as a slow database's, during which the lease moves.
  let moveDuringFacts = false;
  const slowUsers: AggregateModule = {
    ...usersModule,
    async facts(command, state, lookups) {
      if (moveDuringFacts) epoch++;
      return usersModule.facts!(command, state, lookups);
    },
  };
  let moved: CommandBus;
  beforeAll(() => {
    moved = new CommandBus({ system, writer, repo: bus.repo, modules: [slowUsers], logger: createLogger("silent"), ownership });
  });

  it("answers a refusal decided under a lost epoch as unavailable, not as the refusal", async () => {
    await register("own1");
    moveDuringFacts = true;
    try {
      await expect(moved.execute({ context: "users", type: "RegisterUser", aggregateId: "own1", body: { email: "own1@example.com", name: "again" } })).rejects.toMatchObject({ code: "unavailable" });
    } finally {
      moveDuringFacts = false;
    }
    // Held under one epoch throughout, the same refusal is answered as it is.
    await expect(moved.execute({ context: "users", type: "RegisterUser", aggregateId: "own1", body: { email: "own1@example.com", name: "again" } })).rejects.toMatchObject({ code: "conflict" });
  });

  it("reads an aggregate's state from its snapshot once the partition is no longer held", async () => {
    await register("own2");
    held = false;
    try {
      expect(await moved.readState("User", "own2")).toMatchObject({ version: 1 });
      expect(await moved.readState("User", "own2-none")).toEqual({ state: null, version: 0 });
    } finally {
      held = true;
    }
  });
});
