/**
 * A command whose COMMIT reached PostgreSQL but whose answer was lost, the database then out of reach
 * (a real server behind a proxy that loses the answer and then cuts): the command is answered
 * `unavailable` and its actor cannot reload. The actor must not stay in use with the state from before
 * the commit — the retry with the same Idempotency-Key is answered success from the stored key, and the
 * aggregate's reads and next command must see that version (CONTRACT.md §5: reads see every command
 * already answered).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { usersModule } from "../../src/aggregates/index.js";
import { GroupCommitWriter, Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { ActorSystem, CommandBus } from "../../src/runtime/index.js";
import { captureLog, postgresAvailable, proxiedPostgres, type CapturedLog, type TcpProxy, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("CommandBus on PostgreSQL when a commit's answer is lost", () => {
  let pg: TempPostgres;
  let proxy: TcpProxy;
  let db: Database;
  let writer: GroupCommitWriter;
  let system: ActorSystem;
  let bus: CommandBus;
  let log: CapturedLog;
  beforeAll(async () => {
    log = captureLog("warn");
    let url: string;
    ({ pg, proxy, url } = await proxiedPostgres());
    db = await openDatabase({ url });
    const repo = new Repository(db);
    writer = new GroupCommitWriter(db, { outcomeWaitMs: 300 });
    system = new ActorSystem({ load: (t, id) => repo.loadSnapshot(t, id), mailboxSize: 64, maxActors: 1000, idleMs: 60_000 });
    bus = new CommandBus({ system, writer, repo, modules: [usersModule], logger: log.logger });
  });
  afterAll(async () => {
    system?.close();
    await proxy?.restore();
    await writer?.close();
    await db?.close();
    await proxy?.close();
    await pg?.drop();
  });

  const update = (id: string, bio: string, idempotencyKey?: string) => bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: id, body: { profile_data: { bio } }, idempotencyKey });

  it("does not keep an actor that could not reload: the answered retry's version is what reads and the next command see", async () => {
    await bus.execute({ context: "users", type: "RegisterUser", aggregateId: "lc1", body: { email: "lc1@example.com", name: "lc1" } });
    const passed = proxy.loseAnswerTo("COMMIT", 60_000);
    const first = update("lc1", "one", "k1").catch((err: unknown) => err);
    await passed;
    await new Promise((r) => setTimeout(r, 100));
    await proxy.cut();
    expect(await first).toMatchObject({ code: "unavailable" });
    // In doubt, it may have landed: an error line of its own with its correlation id, not one a minute for all
    // storage failures (review of b245c21).
    expect(log.lines.filter((l) => l.msg === "commit failed" && l.level === 50 && l.err?.type === "CommitOutcomeUnknown")).toHaveLength(1);
    await proxy.restore();
    // The retry finds the key its commit stored: it did land.
    expect(await update("lc1", "one", "k1")).toMatchObject({ ok: true, aggregate_version: 2 });
    expect(await bus.readState("User", "lc1")).toMatchObject({ version: 2, state: { profile_data: { bio: "one" } } });
    expect(await update("lc1", "two")).toMatchObject({ ok: true, aggregate_version: 3 });
  });
});
