import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { isNerveError } from "../../contracts/index.js";
import { openDatabase } from "../../src/persistence/index.js";
import { partitionOf } from "../../src/cluster/index.js";
import { captureLog, command, postgresAvailable, startTestNerve, tempPostgres, until, type TestNerve } from "../support/index.js";

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
});
afterAll(async () => {
  await t?.close();
});

describe("orderly shutdown", () => {
  it("answers what it took, flushes the outbox to JetStream, then refuses new commands", async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => command(t.client, "users", "RegisterUser", `s${i}`, { email: `s${i}@example.com`, name: "S" })));
    // Commands in flight when the stop begins are answered; the outbox is empty once stop resolves.
    const late = Array.from({ length: 20 }, (_, i) => t.nerve.bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: `s${i}`, body: { profile_data: { bio: "late" } } }));
    // Handled at once as well: should the stop throw, a late command's rejection is not an unhandled one.
    for (const p of late) p.catch(() => undefined);
    const nerve = t.nerve;
    await nerve.stop();
    const settled = await Promise.allSettled(late);
    expect(settled.every((s) => s.status === "fulfilled")).toBe(true);
    const jsm = await jetstreamManager(t.client);
    expect((await jsm.streams.info("EVENTS_USERS")).state.messages).toBe(70);
    const refused = await nerve.bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: "s1", body: { profile_data: { bio: "after" } } }).catch((e) => e);
    expect(isNerveError(refused, "unavailable")).toBe(true);
    await t.restartNerve();
  });
});

describe("a shutdown step that fails", () => {
  it("is logged and the steps after it still run: NATS is drained and stop() says which step failed", async () => {
    const s = await startTestNerve();
    try {
      expect((await command(s.client, "users", "RegisterUser", "sd-fail", { email: "sd-fail@example.com", name: "S" })).body.ok).toBe(true);
      // The database gone under the service (a failover, a disk): the outbox's last count fails.
      await s.nerve.db.close();
      await expect(s.nerve.stop()).rejects.toThrow(/these shutdown steps failed: .*outbox/);
      // Before, the first failure skipped every step after it: NATS was never drained.
      expect(s.nerve.nc.isClosed()).toBe(true);
    } finally {
      await s.close().catch(() => undefined);
    }
  }, 60_000);
});

describe("a commit the storage refuses", () => {
  it("is answered unavailable (retry), even when reloading the actor fails too — not internal", async () => {
    // Commits on the main connection (NERVE_SQLITE_WRITER=main), so that closing it fails the commit and the reload.
    const s = await startTestNerve({ NERVE_SQLITE_WRITER: "main" });
    try {
      expect((await command(s.client, "users", "RegisterUser", "sd-reload", { email: "sd-reload@example.com", name: "R" })).body.ok).toBe(true);
      await s.nerve.db.close();
      const r = await command(s.client, "users", "UpdateUserProfile", "sd-reload", { profile_data: { display_name: "Again" } });
      expect(r.body.ok).toBe(false);
      expect(r.body.error.code).toBe("unavailable");
    } finally {
      await s.close().catch(() => undefined);
    }
  }, 60_000);
});

describe.skipIf(!(await postgresAvailable()))("a stop while an actor's commit never ends (PostgreSQL, NERVE_SHUTDOWN_MS=2000)", () => {
  it("ends within its bound, releases every partition but the one that commit holds under its fence, and says which step it left running", async () => {
    const pg = await tempPostgres();
    const log = captureLog("warn");
    const s = await startTestNerve({ NERVE_DB: pg.url, NERVE_SHUTDOWN_MS: "2000" }, { logger: log.logger });
    // Its sessions are not ended for idling in a transaction (Nerve's end after 2 s): the lock is held until the test lets go.
    const admin = await openDatabase({ url: pg.url, entities: [], idleInTransactionMs: 600_000 });
    let unlock!: () => void;
    let holding: Promise<void> | undefined;
    try {
      expect((await command(s.client, "users", "RegisterUser", "hung", { email: "hung@example.com", name: "H" })).body.ok).toBe(true);
      // Another session holds the aggregate's snapshot row: the next commit of it waits for that lock, with
      // no timeout, after its fence check (which holds its partition's lease row `for key share`).
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => (locked = r));
      holding = admin.connection.transactional(async (trx) => {
        await admin.execute("select version from nerve_snapshots where aggregate_type = ? and aggregate_id = ? for update", ["User", "hung"], "all", trx);
        locked();
        await new Promise<void>((r) => (unlock = r));
      });
      await isLocked;
      const hung = s.nerve.bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: "hung", body: { profile_data: { bio: "never" } } }).then(
        (r) => r,
        (e: unknown) => e,
      );
      const watcher = await openDatabase({ url: pg.url, entities: [] });
      try {
        await until("the commit waits for the snapshot row's lock", async () => {
          const [w] = await watcher.execute<{ n: number }[]>("select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like 'insert into nerve_snapshots%'", [], "all");
          return Number(w!.n) > 0;
        });
        const started = Date.now();
        const stopped = await s.nerve.stop().then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        const took = Date.now() - started;
        // Was: never, while the job waited (its leases renewed all along, every partition served by nobody).
        // Within the bound and the releasing steps' shared second past it (main.ts exits 2 s past it anyway).
        expect(took).toBeLessThan(2000 + 1000 + 400);
        expect(stopped?.message).toMatch(/did not end within NERVE_SHUTDOWN_MS \(2000 ms\) and were left running: actors/);
        expect(log.lines.some((l) => l.msg?.startsWith("shutdown: a step did not end in time") && l.step === "actors")).toBe(true);
        const owned = await watcher.execute<{ lease_key: string }[]>("select lease_key from nerve_leases where lease_key like 'partitions/%' and owner is not null", [], "all");
        // The one the open commit fences lapses (its next holder waits for that commit); the other 63 are free now.
        expect(owned.map((r) => r.lease_key)).toEqual([`partitions/${partitionOf("hung")}`]);
        expect(log.lines.some((l) => l.msg?.startsWith("leases a commit still in flight holds") && JSON.stringify(l.keys) === JSON.stringify([String(partitionOf("hung"))]))).toBe(true);
      } finally {
        unlock?.();
        await holding?.catch(() => undefined);
        await watcher.close();
      }
      // Once the lock is gone the commit left running lands, under the fence it checked before the release
      // (the lapsing lease keeps its next holder waiting for it); its reply has nowhere to go (NATS drained).
      expect(await hung).toMatchObject({ ok: true, aggregate_version: 2 });
    } finally {
      unlock?.();
      await holding?.catch(() => undefined);
      await admin.close();
      await s.close();
      await pg.drop();
    }
  }, 60_000);
});
