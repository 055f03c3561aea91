/**
 * Durable timers fire only on their partition's owner (issue #11 item 5): two instances under real
 * leases on one PostgreSQL database split the due timers between them, each firing exactly its own
 * partitions'; alone on SQLite an instance fires them all, rows older than the partition column too.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { PARTITIONS, PartitionLeases, SoleOwnership, clusterEntities, partitionOf, type Ownership } from "../../src/cluster/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import type { CommandBus } from "../../src/runtime/index.js";
import { TimerService, timerOp, timerRetryDelayMs, type TimerKind } from "../../src/timers/index.js";
import { backgroundFailures } from "../../src/supervision/index.js";
import { postgresAvailable, tempPostgres, tempSqlitePath } from "../support/index.js";

const available = await postgresAvailable();
const quiet = pino({ level: "silent" });

/** A timer kind that does nothing when due and is then done (its row is deleted). */
const kind: TimerKind = { context: "access", aggregateType: "AccessRecord", kind: "expire", fire: () => [], deadline: () => null };

/** A timer service over `db` and `ownership` whose bus only records what it was asked to run. */
function service(db: Database, ownership: Ownership | undefined, fired: string[]): TimerService {
  const bus = {
    executeInternal: async (_context: string, aggregateId: string) => void fired.push(aggregateId),
    readState: async () => ({ state: null, version: 0 }),
  } as unknown as CommandBus;
  return new TimerService({ db, bus, logger: quiet, kinds: [kind], ownership });
}

/** Due timers for `ids`, written as the command path writes them. */
async function dueTimers(db: Database, ids: string[]): Promise<void> {
  for (const id of ids) {
    const op = timerOp(kind, id, "2020-01-01T00:00:00.000Z");
    await db.execute(op.sql, op.params, "run");
  }
}

/** A row as a version without the partition column left it. */
const legacyTimer = (db: Database, id: string) =>
  db.execute("insert into nerve_timers (aggregate_type, aggregate_id, kind, due_at) values (?, ?, ?, ?)", [kind.aggregateType, id, kind.kind, "2020-01-01T00:00:00.000Z"], "run");

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

describe("TimerService and ownership", () => {
  it("alone (SQLite) fires every due timer, one written before the partition column too", async () => {
    const tmp = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${tmp.path}` });
    cleanups.push(tmp.cleanup, () => db.close());
    const ids = Array.from({ length: 20 }, (_, i) => `solo${i}`);
    await dueTimers(db, ids);
    await legacyTimer(db, "solo-legacy");
    const fired: string[] = [];
    await service(db, new SoleOwnership("solo"), fired).poll();
    expect(fired.sort()).toEqual([...ids, "solo-legacy"].sort());
    expect(await db.execute("select * from nerve_timers", [], "all")).toEqual([]);
  });

  it("stops within its catch-up: stop() waits for the timer being fired, not for the rest of the 500 due (they fire at the next start)", async () => {
    const tmp = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${tmp.path}` });
    cleanups.push(tmp.cleanup, () => db.close());
    await dueTimers(db, Array.from({ length: 500 }, (_, i) => `slow${i}`));
    const fired: string[] = [];
    // Each fire takes 20 ms (a command's commit): the whole catch-up would take 0.3 s at 32 at once.
    const bus = {
      executeInternal: async (_context: string, aggregateId: string) => {
        await new Promise((r) => setTimeout(r, 20));
        fired.push(aggregateId);
      },
      readState: async () => ({ state: null, version: 0 }),
    } as unknown as CommandBus;
    const timers = new TimerService({ db, bus, logger: quiet, kinds: [kind], ownership: new SoleOwnership("solo") });
    timers.start();
    // Stopped once the catch-up is under way (a timer fired), not after some time.
    await vi.waitFor(() => expect(fired.length).toBeGreaterThanOrEqual(1), { timeout: 10_000 });
    await timers.stop();
    const firedAtStop = fired.length;
    // Not the whole catch-up: the rest of the 500 are left for the next start.
    expect(firedAtStop).toBeLessThan(500);
    // Nothing fired after the stop, and the rest wait in the table.
    await new Promise((r) => setTimeout(r, 100));
    expect(fired).toHaveLength(firedAtStop);
    expect(((await db.execute("select count(*) as n from nerve_timers", [], "get")) as { n: number }).n).toBe(500 - firedAtStop);
  });

  it.skipIf(!available)("two instances on PostgreSQL: each fires exactly the due timers of the partitions it holds", async () => {
    const pg = await tempPostgres();
    cleanups.push(() => pg.drop());
    const open = async () => {
      const db = await openDatabase({ url: pg.url, entities: clusterEntities });
      cleanups.push(() => db.close());
      return db;
    };
    const lease = async (db: Database, id: string) => {
      const l = new PartitionLeases({ db, instanceId: id, logger: quiet, ttlMs: 1200, renewEveryMs: 200 });
      cleanups.push(() => l.stop());
      await l.start();
      return l;
    };
    const [dbA, dbB] = [await open(), await open()];
    const a = await lease(dbA, "a");
    const b = await lease(dbB, "b");
    const deadline = Date.now() + 10_000;
    while (a.held().length + b.held().length !== PARTITIONS || b.held().length === 0) {
      if (Date.now() > deadline) throw new Error("the leases did not split");
      await new Promise((r) => setTimeout(r, 20));
    }
    const ids = Array.from({ length: 60 }, (_, i) => `tm${i}`);
    await dueTimers(dbA, ids);
    await legacyTimer(dbA, "tm-legacy");
    const all = [...ids, "tm-legacy"];

    const firedA: string[] = [];
    const firedB: string[] = [];
    await Promise.all([service(dbA, a, firedA).poll(), service(dbB, b, firedB).poll()]);
    const heldByA = new Set(a.held());
    expect(firedA.sort()).toEqual(all.filter((id) => heldByA.has(partitionOf(id))).sort());
    expect(firedB.sort()).toEqual(all.filter((id) => !heldByA.has(partitionOf(id))).sort());
    expect(firedA.length).toBeGreaterThan(0);
    expect(firedB.length).toBeGreaterThan(0);
    expect(await dbA.execute("select * from nerve_timers", [], "all")).toEqual([]);
  });
});

describe("TimerService after a fire", () => {
  /**
   * A command commits between the fire and the row's follow-up (re-granting an access that had just
   * expired writes its new deadline in its own transaction): the follow-up, from the state read
   * before, must leave that deadline alone. Before, it deleted it: the re-granted access never expired.
   */
  it.each([
    ["the older state has no deadline (the row would be deleted)", null],
    ["the older state has another deadline (the row would be moved)", "2099-06-01T00:00:00.000Z"],
  ])("keeps a deadline a command wrote meanwhile: %s", async (_what, staleDeadline) => {
    const tmp = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${tmp.path}` });
    cleanups.push(tmp.cleanup, () => db.close());
    await dueTimers(db, ["regranted"]);
    const regrantedUntil = "2099-01-01T00:00:00.000Z";
    const k: TimerKind = { ...kind, deadline: () => staleDeadline };
    const bus = {
      executeInternal: async () => undefined,
      // The re-grant's commit lands while the timer service reads the state it then acts on.
      readState: async () => {
        const op = timerOp(k, "regranted", regrantedUntil);
        await db.execute(op.sql, op.params, "run");
        return { state: null, version: 1 };
      },
    } as unknown as CommandBus;
    await new TimerService({ db, bus, logger: quiet, kinds: [k], ownership: new SoleOwnership("solo") }).poll();
    expect(await db.execute("select aggregate_id, due_at from nerve_timers", [], "all")).toEqual([{ aggregate_id: "regranted", due_at: regrantedUntil }]);
  });

  it("fires as of the poll that found the timer due, though the clock stepped back since (was: nothing fired and the row deleted: never expired)", async () => {
    const tmp = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${tmp.path}` });
    cleanups.push(tmp.cleanup, () => db.close());
    const due = "2026-06-01T00:00:00.000Z";
    const op = timerOp(kind, "stepped", due);
    await db.execute(op.sql, op.params, "run");
    // The poll reads 00:00:01; by the time the command bus reads its clock, NTP has stepped it back a second and a half.
    const pollClock = () => new Date("2026-06-01T00:00:01.000Z");
    const busAt = "2026-05-31T23:59:59.500Z";
    let expired = false;
    const k: TimerKind = {
      ...kind,
      fire: (_state, at) => {
        expired = at >= due;
        return [];
      },
      deadline: () => (expired ? null : due),
    };
    const bus = {
      executeInternal: async (_c: string, _id: string, _kind: string, run: (state: unknown, at: string) => unknown) => void run({}, busAt),
      readState: async () => ({ state: {}, version: 1 }),
    } as unknown as CommandBus;
    await new TimerService({ db, bus, logger: quiet, kinds: [k], ownership: new SoleOwnership("solo"), clock: pollClock }).poll();
    expect(expired).toBe(true);
    expect(await db.execute("select * from nerve_timers", [], "all")).toEqual([]);
  });

  it("moves a timer whose fire fails out of the way, counted, so timers behind it fire (was: failing rows first in every poll's window)", async () => {
    const tmp = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${tmp.path}` });
    cleanups.push(tmp.cleanup, () => db.close());
    // A poll's window is 500 due timers: 500 that fail every time, due before the one that would not.
    const broken = Array.from({ length: 500 }, (_, i) => `broken${String(i).padStart(3, "0")}`);
    for (const [id, due] of [...broken.map((id) => [id, "2020-01-01T00:00:00.000Z"] as const), ["fine", "2020-01-03T00:00:00.000Z"] as const]) {
      const op = timerOp(kind, id, due);
      await db.execute(op.sql, op.params, "run");
    }
    const fired: string[] = [];
    const bus = {
      executeInternal: async (_c: string, id: string) => {
        if (id.startsWith("broken")) throw new Error(`${id} cannot be loaded`);
        fired.push(id);
      },
      readState: async () => ({ state: null, version: 0 }),
    } as unknown as CommandBus;
    const now = new Date("2026-06-01T00:00:00.000Z");
    const timers = new TimerService({ db, bus, logger: quiet, kinds: [kind], ownership: new SoleOwnership("solo"), clock: () => now });
    const before = backgroundFailures.get("timers") ?? 0;
    await timers.poll();
    await timers.poll();
    expect(fired).toEqual(["fine"]);
    expect(timers.failed).toBe(500);
    expect((backgroundFailures.get("timers") ?? 0) - before).toBe(500);
    // Tried again in 15 s; the state, not the row, says what a fire records.
    expect(await db.execute("select distinct due_at from nerve_timers", [], "all")).toEqual([{ due_at: "2026-06-01T00:00:15.000Z" }]);
    expect(await db.execute("select count(*) as n from nerve_timers", [], "all")).toEqual([{ n: 500 }]);
    expect([1, 2, 3, 7, 20].map(timerRetryDelayMs)).toEqual([15_000, 30_000, 60_000, 900_000, 900_000]);
  });

  it("leaves a timer due when its fire meets an outage (the database locked, a fence): no back-off, tried at the next poll", async () => {
    const tmp = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${tmp.path}` });
    cleanups.push(tmp.cleanup, () => db.close());
    const op = timerOp(kind, "busy", "2020-01-01T00:00:00.000Z");
    await db.execute(op.sql, op.params, "run");
    let attempts = 0;
    const bus = {
      executeInternal: async () => {
        attempts++;
        throw Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
      },
      readState: async () => ({ state: null, version: 0 }),
    } as unknown as CommandBus;
    const timers = new TimerService({ db, bus, logger: quiet, kinds: [kind], ownership: new SoleOwnership("solo"), clock: () => new Date("2026-06-01T00:00:00.000Z") });
    await timers.poll();
    await timers.poll();
    expect(attempts).toBe(2);
    expect(timers.failed).toBe(0);
    expect(await db.execute("select due_at from nerve_timers", [], "all")).toEqual([{ due_at: "2020-01-01T00:00:00.000Z" }]);
  });

  it("still settles a fire that changed nothing: the row follows the state (gone, or moved on)", async () => {
    const tmp = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${tmp.path}` });
    cleanups.push(tmp.cleanup, () => db.close());
    await dueTimers(db, ["noop-done", "noop-later"]);
    const later = "2099-03-01T00:00:00.000Z";
    const k: TimerKind = { ...kind, deadline: (state) => (state as { later: boolean } | null)?.later ? later : null };
    const bus = {
      executeInternal: async () => undefined,
      readState: async (_type: string, id: string) => ({ state: { later: id === "noop-later" }, version: 1 }),
    } as unknown as CommandBus;
    await new TimerService({ db, bus, logger: quiet, kinds: [k], ownership: new SoleOwnership("solo") }).poll();
    expect(await db.execute("select aggregate_id, due_at from nerve_timers", [], "all")).toEqual([{ aggregate_id: "noop-later", due_at: later }]);
  });
});
