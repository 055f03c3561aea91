/**
 * One aggregate run by two actors for a moment (a partition lost and taken back while an actor was busy:
 * its queued command runs on under the new epoch, and the client's retry makes a new actor): a keyed no-op
 * committed by one, then by the other with the same key, hits the key's primary key. The second is the
 * key's repeat and gets the first reply, not `conflict` (idempotency audit). Real PostgreSQL; the two
 * actors are two actor systems on one database, the first's commit held at its writer's admission.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { usersModule } from "../../src/aggregates/index.js";
import { createLogger } from "../../src/log/index.js";
import { GroupCommitWriter, Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { ActorSystem, CommandBus } from "../../src/runtime/index.js";
import { isNerveError } from "../../contracts/index.js";
import { postgresAvailable, tempPostgres, until, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("a keyed command run by two actors of one aggregate at once", () => {
  let pg: TempPostgres;
  let db: Database;
  const writers: GroupCommitWriter[] = [];
  const systems: ActorSystem[] = [];
  let gate: Promise<void> | undefined;
  let atGate = false;
  let first: CommandBus;
  let second: CommandBus;
  beforeAll(async () => {
    pg = await tempPostgres();
    db = await openDatabase({ url: pg.url });
    const repo = new Repository(db);
    const bus = (admission?: () => Promise<void> | undefined) => {
      const writer = new GroupCommitWriter(db, { admission });
      const system = new ActorSystem({ load: (t, id) => repo.loadSnapshot(t, id), mailboxSize: 64, maxActors: 1000, idleMs: 60_000 });
      writers.push(writer);
      systems.push(system);
      return new CommandBus({ system, writer, repo, modules: [usersModule], logger: createLogger("silent") });
    };
    first = bus(() => {
      if (!gate) return undefined;
      atGate = true;
      return gate;
    });
    second = bus();
  });
  afterAll(async () => {
    for (const s of systems) s.close();
    for (const w of writers) await w.close();
    await db?.close();
    await pg?.drop();
  });

  const update = (bus: CommandBus, key: string, bio: string, id = "two") => bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: id, body: { profile_data: { bio } }, idempotencyKey: key });

  it("answers the second commit of the key with the first reply (was: conflict), and a different command under it conflict", async () => {
    await first.execute({ context: "users", type: "RegisterUser", aggregateId: "two", body: { email: "two@example.com", name: "T" } });
    await update(first, "warm", "same");
    await update(second, "warm2", "same");
    // The first actor's attempt looked the key up (absent) and waits to commit.
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    const attempt = update(first, "K", "same").then(
      (r) => r,
      (e: unknown) => e,
    );
    await until("the first attempt waits to commit", () => atGate, 5000);
    // The retry, on the other actor, commits the key first.
    const retry = await update(second, "K", "same");
    expect(retry).toMatchObject({ ok: true, aggregate_id: "two", events: [] });
    gate = undefined;
    open();
    expect(await attempt).toEqual(retry);

    // A different command (another no-op body) under a key taken meanwhile is still `conflict`.
    gate = new Promise((r) => (open = r));
    atGate = false;
    const other = update(first, "K2", "same").then(
      (r) => r,
      (e: unknown) => e,
    );
    await until("the other attempt waits to commit", () => atGate, 5000);
    expect(await second.execute({ context: "users", type: "UpdateUserProfile", aggregateId: "two", body: { profile_data: {} }, idempotencyKey: "K2" })).toMatchObject({ ok: true, events: [] });
    gate = undefined;
    open();
    const refused = await other;
    expect(isNerveError(refused, "conflict"), String(refused)).toBe(true);
    expect((refused as Error).message).toMatch(/Idempotency-Key was used for a different command/);
  });

  it("refuses, unavailable, the commands still queued on an actor forgotten while busy (its partition lost): its aggregate's next actor runs them on retry, once", async () => {
    const system = systems[0]!;
    await first.execute({ context: "users", type: "RegisterUser", aggregateId: "three", body: { email: "three@example.com", name: "T" } });
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    atGate = false;
    // One command waits to commit on the actor; another, keyed, is queued behind it.
    const running = update(first, "R1", "running", "three").then(
      (r) => r,
      (e: unknown) => e,
    );
    await until("the first waits to commit", () => atGate, 5000);
    const queued = update(first, "R2", "queued", "three").then(
      (r) => r,
      (e: unknown) => e,
    );
    // The partition is lost: the busy actor is forgotten at once (src/app/nerve.ts's `lost`).
    expect(await system.forget((id) => id === "three")).toBe(1);
    gate = undefined;
    open();
    expect(await running).toMatchObject({ ok: true });
    const refused = await queued;
    expect(isNerveError(refused, "unavailable"), String(refused)).toBe(true);
    // The retry runs on a new actor, once.
    const retried = await update(first, "R2", "queued", "three");
    expect(retried).toMatchObject({ ok: true, events: [{ event_type: "UserProfileUpdated" }] });
    expect(await update(first, "R2", "queued", "three")).toEqual(retried);
  });
});
