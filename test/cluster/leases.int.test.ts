/**
 * Partition leases and fencing on a real PostgreSQL (issue #11): instances split the 64 partitions by
 * rendezvous, a join moves about half, a dead instance's partitions are taken over once its leases lapse, a
 * former owner gives a lapsed lease up (by its own clock) before anyone can take it, and no commit under
 * an old epoch can land — not even one that holds its transaction open across the takeover. A fenced
 * transaction, however long, holds up no renewal (its lease's takeover still waits for it) and no other
 * instance's acquisitions; a lease statement waiting for a lock gives up after the pool's lock_timeout.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { PartitionLeases, FencedError, checkFences, clusterEntities, PARTITIONS } from "../../src/cluster/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, tempPostgres, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();
const quiet = pino({ level: "silent" });
const TTL = 1200;
const RENEW = 200;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

describe.skipIf(!available)("partition leases on PostgreSQL", () => {
  let pg: TempPostgres;
  const dbs: Database[] = [];
  const managers: PartitionLeases[] = [];

  const open = async (idleInTransactionMs?: number) => {
    const db = await openDatabase({ url: pg.url, entities: clusterEntities, idleInTransactionMs });
    dbs.push(db);
    return db;
  };
  const manager = async (instanceId: string, db?: Database) => {
    const m = new PartitionLeases({ db: db ?? (await open()), instanceId, logger: quiet, ttlMs: TTL, renewEveryMs: RENEW });
    managers.push(m);
    await m.start();
    return m;
  };

  beforeEach(async () => {
    pg = await tempPostgres();
  });
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.stop().catch(() => undefined);
    for (const db of dbs.splice(0)) await db.close().catch(() => undefined);
    await pg.drop();
  });

  it("woken early again and again (a nudge per hand-off), leaves no timer or abort listener behind per wake", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    try {
      const db = await open();
      const m = new PartitionLeases({ db, instanceId: "woken", logger: quiet, ttlMs: 30_000, renewEveryMs: 10_000 });
      managers.push(m);
      await m.start();
      // 40 wakes well inside one renewal period: each round runs, then waits again.
      for (let i = 0; i < 40; i++) {
        m.wake();
        await sleep(15);
      }
      await sleep(50);
      expect(warnings.filter((w) => w.includes("MaxListenersExceeded"))).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("one instance takes every partition; a second one joins and they split them, disjoint and complete", async () => {
    const a = await manager("a");
    expect(a.held()).toHaveLength(PARTITIONS);
    const epochsBefore = new Map(a.held().map((p) => [p, a.fence(p)!.epoch]));

    const b = await manager("b");
    await until("the two hold every partition between them", () => a.held().length + b.held().length === PARTITIONS && b.held().length > 0, 10_000);
    const mine = new Set(a.held());
    expect(b.held().filter((p) => mine.has(p))).toEqual([]);
    // Rendezvous: about half moves (64 partitions: a wide band, but never none or all).
    expect(b.held().length).toBeGreaterThan(16);
    expect(b.held().length).toBeLessThan(48);
    // Every moved partition has a newer epoch than the one a held.
    for (const p of b.held()) expect(b.fence(p)!.epoch).toBeGreaterThan(epochsBefore.get(p)!);
  });

  // How soon is a figure for `npm run bench:cluster` (takeover after kill -9), not a bound here.
  it("a dead instance's partitions are taken over once its leases lapse; it gave them up by its own clock first", async () => {
    const aDb = await open();
    const a = await manager("a", aDb);
    const b = await manager("b");
    await until("split", () => a.held().length + b.held().length === PARTITIONS && b.held().length > 0);
    const aParts = a.held();
    const lapsedAt = new Map<number, number>();
    a.on("lost", (p) => lapsedAt.set(p, performance.now()));
    const takenAt = new Map<number, number>();
    b.on("acquired", (p) => takenAt.set(p, performance.now()));

    await aDb.close(); // a can no longer renew: as good as dead to the others
    await until("b holds every partition", () => b.held().length === PARTITIONS, 30_000);
    for (const p of aParts) {
      expect(a.fence(p)).toBeUndefined();
      expect(lapsedAt.get(p), `a gave ${p} up before b took it`).toBeLessThan(takenAt.get(p)!);
    }
  });

  it("fails a commit under an old epoch, and makes a takeover wait for a commit holding the fence", async () => {
    const db = await open();
    const a = await manager("a", db);
    const p = 7;
    const fence = a.fence(p)!;
    const exec = (trx: unknown) => (sql: string, params: unknown[], method: "all" | "run") => db.execute(sql, params, method, trx);

    // A transaction that checked its fence holds the lease row: the takeover's update waits for it.
    const other = await open();
    const watcher = await open();
    let committed = false;
    let takenOver = false;
    let fenced!: () => void;
    const checked = new Promise<void>((resolve) => (fenced = resolve));
    const inTx = db.connection.transactional(async (trx) => {
      await checkFences(exec(trx) as never, "a", [fence]);
      fenced();
      // Held open until the takeover is seen waiting for the row's lock (PostgreSQL's own view), not for a while.
      await until("the takeover waits for the lease row's lock", async () => {
        const [w] = await watcher.execute<{ n: number }[]>("select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like 'update nerve_leases%'", [], "all");
        return Number(w!.n) > 0;
      });
      expect(takenOver).toBe(false);
      committed = true;
    });
    // Handled at once as well: a failure before it is awaited must not leave its rejection unhandled.
    inTx.catch(() => undefined);
    await checked;
    const takeover = other.execute("update nerve_leases set owner = ?, epoch = epoch + 1, lease_until = now() + interval '5 seconds' where lease_key = ? returning epoch", ["b", `partitions/${p}`], "all").then((rows) => {
      takenOver = true;
      return rows;
    });
    const [row] = (await takeover) as { epoch: number }[];
    expect(committed).toBe(true); // the takeover went through only after the fenced commit
    await inTx;
    expect(Number(row!.epoch)).toBe(fence.epoch + 1);

    // From now on a's fence is stale: its commits fail, whatever a's own clock still says.
    await expect(db.connection.transactional((trx) => checkFences(exec(trx) as never, "a", [fence]))).rejects.toBeInstanceOf(FencedError);
    await until("a notices at its next renewal", () => a.fence(p) === undefined, 3_000);
  });

  it("keeps every lease, its own and the others', while a fenced transaction runs past a lease's validity; a takeover of that lease still waits for its commit", async () => {
    const db = await open();
    const a = await manager("a", db);
    const b = await manager("b");
    await until("split", () => a.held().length + b.held().length === PARTITIONS && a.held().length > 0 && b.held().length > 0);
    const [aHeld, bHeld] = [a.held(), b.held()];
    const p = aHeld[0]!;
    const fence = a.fence(p)!;
    const other = await open();
    const watcher = await open();
    const exec = (trx: unknown) => (sql: string, params: unknown[], method: "all" | "run") => db.execute(sql, params, method, trx);

    let slept = false;
    let committed = false;
    let takenOver = false;
    let fenced!: () => void;
    const checked = new Promise<void>((resolve) => (fenced = resolve));
    const inTx = db.connection.transactional(async (trx) => {
      await checkFences(exec(trx) as never, "a", [fence]);
      fenced();
      // One statement of the transaction runs three validities of the lease (0.96 s): a slow query, a lock
      // wait behind another instance's DDL. With the fence `for share` the renewal of every lease of the
      // group waited for it, and a lost them all within a validity (b too, once a's membership lapsed).
      await db.execute("select pg_sleep(3)", [], "all", trx);
      slept = true;
      // Still open: the takeover of this very lease waits for it, PostgreSQL's own view.
      await until("the takeover waits for the lease row's lock", async () => {
        const [w] = await watcher.execute<{ n: number }[]>("select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '/* takeover */%'", [], "all");
        return Number(w!.n) > 0;
      });
      expect(takenOver).toBe(false);
      committed = true;
    });
    // Handled at once as well: a failure before it is awaited must not leave its rejection unhandled.
    inTx.catch(() => undefined);
    await checked;
    // Sampled until the transaction is about to commit, the takeover's wait included.
    const shortfalls: string[] = [];
    const sampling = (async () => {
      while (!committed) {
        if (a.held().length < aHeld.length) shortfalls.push(`a held ${a.held().length} of ${aHeld.length}`);
        if (b.held().length < bHeld.length) shortfalls.push(`b held ${b.held().length} of ${bHeld.length}`);
        await sleep(25);
      }
    })();
    await until("the long statement ended", () => slept, 20_000);
    const takeover = other
      .execute("/* takeover */ update nerve_leases set owner = ?, epoch = epoch + 1, lease_until = now() + interval '5 seconds' where lease_key = ? returning epoch", ["b", `partitions/${p}`], "all")
      .then((rows) => {
        takenOver = true;
        return rows as { epoch: number }[];
      });
    const [row] = await takeover;
    expect(committed).toBe(true); // the takeover went through only after the fenced commit
    await inTx;
    await sampling;
    expect(shortfalls.slice(0, 3)).toEqual([]);
    expect(a.leases.stats.lost + b.leases.stats.lost).toBe(0);
    expect(Number(row!.epoch)).toBe(fence.epoch + 1);
    await expect(db.connection.transactional((trx) => checkFences(exec(trx) as never, "a", [fence]))).rejects.toBeInstanceOf(FencedError);
  });

  it("skips a lease its former owner's open transaction still fences, keeps taking and renewing the rest, and takes it once that commits", async () => {
    const db = await open();
    const p = 5;
    // A former owner gone past its lease, one fenced transaction of its still open.
    await db.execute("insert into nerve_leases (lease_key, owner, epoch, lease_until) values (?, 'gone', 1, now() - interval '1 second')", [`partitions/${p}`], "run");
    const exec = (trx: unknown) => (sql: string, params: unknown[], method: "all" | "run") => db.execute(sql, params, method, trx);
    let ending = false;
    let ended = false;
    let fenced!: () => void;
    const checked = new Promise<void>((resolve) => (fenced = resolve));
    const inTx = db.connection.transactional(async (trx) => {
      await checkFences(exec(trx) as never, "gone", [{ partition: p, epoch: 1 }]);
      fenced();
      // Busy (not idle, which the server would end) until the test lets it commit; at most 10 s.
      const deadline = Date.now() + 10_000;
      while (!ending && Date.now() < deadline) await db.execute("select pg_sleep(0.05)", [], "all", trx);
      ended = true;
      return ending;
    });
    // Handled at once as well: a failure before it is awaited must not leave its rejection unhandled.
    inTx.catch(() => undefined);
    await checked;

    // Waiting for that row held b's start (and then each of its rounds) up for as long as the transaction ran.
    const b = await manager("b");
    expect(ended).toBe(false);
    expect(b.held()).toHaveLength(PARTITIONS - 1);
    expect(b.held()).not.toContain(p);
    const shortfalls: number[] = [];
    const rounds = b.leases.stats.rounds;
    await until("five more rounds of b", () => {
      if (b.held().length < PARTITIONS - 1) shortfalls.push(b.held().length);
      return b.leases.stats.rounds >= rounds + 5;
    });
    expect(b.held()).not.toContain(p);
    ending = true;
    expect(await inTx).toBe(true); // committed while the test held it open, not at its deadline
    await until("b takes the lease once the transaction committed", () => b.held().includes(p));
    expect(b.fence(p)!.epoch).toBe(2);
    expect(shortfalls).toEqual([]);
    expect(b.leases.stats.lost).toBe(0);
  });

  it("gives a lock wait up after the leases' lock_timeout: with a lease row locked elsewhere the round waiting for it fails and the next ones run, rather than all waiting for the lock", async () => {
    const a = await manager("a");
    const db = await open();
    let release = false;
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holder = db.connection.transactional(async (trx) => {
      await db.execute("select lease_key from nerve_leases where lease_key = ? for update", ["partitions/0"], "all", trx);
      locked();
      const deadline = Date.now() + 10_000;
      while (!release && Date.now() < deadline) await db.execute("select pg_sleep(0.05)", [], "all", trx);
    });
    await lockTaken;
    // Rounds run one at a time: one that waits for the lock held every later one back until the lock went.
    // (a's leases lapse meanwhile, by its clock, since this test's lease is shorter than the lock_timeout.)
    const { rounds, failedRounds } = a.leases.stats;
    await until("the waiting round gave up and three more started", () => a.leases.stats.rounds >= rounds + 3 && a.leases.stats.failedRounds >= failedRounds + 1);
    release = true;
    await holder;
    await until("a holds every partition again", () => a.held().length === PARTITIONS);
  });

  it("ends a frozen owner's open transaction, so a takeover never waits on it for long", async () => {
    const frozen = await open(300);
    const a = await manager("a");
    const fence = a.fence(3)!;
    let fenced!: () => void;
    const checked = new Promise<void>((resolve) => (fenced = resolve));
    let thaw!: () => void;
    const thawed = new Promise<void>((resolve) => (thaw = resolve));
    const stuck = frozen.connection
      .transactional(async (trx) => {
        await checkFences(((sql: string, params: unknown[], method: "all" | "run") => frozen.execute(sql, params, method, trx)) as never, "a", [fence]);
        fenced();
        await thawed; // paused between statements, like a SIGSTOPped process: until the takeover is through
        await frozen.execute("select 1", [], "all", trx);
      })
      .then(
        () => "committed",
        () => "failed",
      );
    const other = await open();
    await checked;
    // Through while the owner is still frozen: only the server's idle-in-transaction timeout (300 ms) can
    // have ended the transaction that held the row.
    await other.execute("update nerve_leases set epoch = epoch + 1 where lease_key = ?", ["partitions/3"], "run");
    thaw();
    expect(await stuck).toBe("failed");
  });

  it("keeps every lease through repeated blips of the database: a failed round is followed by the next on time", async () => {
    // The real database, with one lease statement failing on demand (a dropped connection).
    const db = await open();
    let failNext = 0;
    const flaky = new Proxy(db, {
      get(target, prop, receiver) {
        if (prop === "leaseExecute") {
          return (...args: Parameters<Database["leaseExecute"]>) => (failNext > 0 && failNext-- > 0 ? Promise.reject(new Error("Connection terminated unexpectedly")) : target.leaseExecute(...args));
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const a = await manager("a", flaky);
    expect(a.held()).toHaveLength(PARTITIONS);
    let lost = 0;
    a.on("lost", () => lost++);
    // Eight failed rounds, a little more than one round apart: under the supervisor's back-off (doubling,
    // reset only after 30 s of health) the rounds spread past a lease's validity and every lease lapsed.
    for (let i = 0; i < 8; i++) {
      failNext = 1;
      await until(`blip ${i + 1} hit a round`, () => failNext === 0, 5_000);
      await sleep(RENEW + 100);
    }
    expect(a.leases.stats.failedRounds).toBe(8);
    expect(lost).toBe(0);
    expect(a.held()).toHaveLength(PARTITIONS);
  });

  it("refuses to start beside a live process of the same instance id, and starts after one of that id that died", async () => {
    const a = await manager("twin");
    expect(a.held()).toHaveLength(PARTITIONS);
    const second = new PartitionLeases({ db: await open(), instanceId: "twin", logger: quiet, ttlMs: TTL, renewEveryMs: RENEW });
    await expect(second.start()).rejects.toThrow("another live process uses NERVE_INSTANCE_ID=twin (it renewed its partitions membership just now): give every instance its own id");
    expect(a.held()).toHaveLength(PARTITIONS);

    // A process of this id that died a moment ago: its membership is live but nobody renews it.
    const db = await open();
    await db.execute("insert into nerve_instances (grp, instance_id, seen_until, started_on) values (?, ?, now() + interval '5 seconds', now())", ["partitions", "phoenix"], "run");
    const reborn = new PartitionLeases({ db, instanceId: "phoenix", logger: quiet, ttlMs: TTL, renewEveryMs: RENEW });
    managers.push(reborn);
    await reborn.start();
    await until("the reborn instance holds partitions", () => reborn.held().length > 0);
  });
});
