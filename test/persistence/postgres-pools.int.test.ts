/**
 * PostgreSQL's connection budgets, on a real server: a burst of slow read-model queries neither takes
 * the leases' connections (the instance keeps every partition, its renewals go on) nor the main pool's
 * (a command path's statement is answered); the queries beyond the budget are answered `unavailable`;
 * a query past its statement_timeout is cut off, `unavailable` too. A connect the server refuses for its
 * connection limits leaves the statements waiting for the open connections; a server out of reach fails
 * them at once.
 */
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { pino } from "pino";
import { NerveError } from "../../contracts/index.js";
import { PARTITIONS, PartitionLeases, clusterEntities } from "../../src/cluster/index.js";
import { queryTxOf } from "../../src/consumers/index.js";
import { isTransientFailure } from "../../src/consumers/transient.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { pgAdmin, postgresAvailable, tcpProxy, tempPostgres, withoutStartupOptions, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();
const quiet = pino({ level: "silent" });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

describe.skipIf(!available)("PostgreSQL's connection budgets", () => {
  let pg: TempPostgres;
  const dbs: Database[] = [];
  const open = async (o: { pgPool?: number; pgQueries?: number; pgQueryTimeoutMs?: number }) => {
    const db = await openDatabase({ url: pg.url, entities: clusterEntities, ...o });
    dbs.push(db);
    return db;
  };
  beforeEach(async () => {
    pg = await tempPostgres();
  });
  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.close().catch(() => undefined);
    await pg.drop();
  });

  it("a burst of slow queries leaves the leases and the main pool their connections; those beyond the budget are `unavailable`", async () => {
    const db = await open({ pgPool: 3, pgQueries: 2, pgQueryTimeoutMs: 30_000 });
    const watcher = await open({});
    const leases = new PartitionLeases({ db, instanceId: "busy", logger: quiet, ttlMs: 1500, renewEveryMs: 200 });
    await leases.start();
    try {
      expect(leases.held()).toHaveLength(PARTITIONS);
      const tx = queryTxOf(db);
      // Ten times what the budget takes at once, plus more than may wait: each sleeps a second.
      let settled = 0;
      const burst = Array.from({ length: 70 }, () =>
        tx
          .execute("select pg_sleep(?) as slept", [1], "get")
          .then(
            () => "answered",
            (err: unknown) => err,
          )
          .finally(() => settled++),
      );
      const sleeping = async () =>
        Number((await watcher.execute<{ n: string }>("select count(*) as n from pg_stat_activity where datname = current_database() and query like ? and state = ?", ["select pg_sleep(%", "active"], "get")).n);
      let most = 0;
      const sampled = (async () => {
        while (settled < burst.length) {
          most = Math.max(most, await sleeping());
          await sleep(50);
        }
      })();
      await until("the queries sleep", () => most > 0);
      // While they do, the leases are renewed round after round, and the main pool answers.
      const rounds = leases.leases.stats.rounds;
      await until("three more lease rounds", () => leases.leases.stats.rounds >= rounds + 3);
      expect(await db.execute("select 1 as one", [], "get")).toEqual({ one: 1 });
      expect(settled).toBeLessThan(burst.length);
      const outcomes = await Promise.all(burst);
      const refused = outcomes.filter((o) => o !== "answered");
      for (const r of refused) expect(r).toMatchObject({ code: "unavailable" });
      expect(refused.every((r) => r instanceof NerveError && r.retryable)).toBe(true);
      expect(refused.length).toBeGreaterThanOrEqual(70 - 64 - 2);
      expect(outcomes.filter((o) => o === "answered").length).toBeGreaterThanOrEqual(2);
      // Never more than the budget's two at once: the rest waited, or were refused.
      await sampled;
      expect(most).toBeLessThanOrEqual(2);
      expect(leases.leases.stats).toMatchObject({ lost: 0, failedRounds: 0 });
      expect(leases.held()).toHaveLength(PARTITIONS);
    } finally {
      await leases.stop();
    }
  });

  it("cuts a query off at its statement_timeout and answers it `unavailable`; the main pool has no such limit", async () => {
    const db = await open({ pgQueryTimeoutMs: 200 });
    const err = await db.query("select pg_sleep(?) as slept", [30], "get").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "57014" });
    await expect(queryTxOf(db).execute("select pg_sleep(?) as slept", [30], "get")).rejects.toMatchObject({ code: "unavailable" });
    expect(await db.execute("select pg_sleep(?) as slept", [0.5], "get")).toEqual({ slept: "" });
    expect(db.queryTimeoutSetBy).toBe("startup");
  });

  it("cuts a query off at its statement_timeout behind a pooler that drops the startup options (PgBouncer in transaction mode, ignore_startup_parameters = options)", async () => {
    const server = new URL(pg.url);
    const proxy = await tcpProxy({ host: server.hostname, port: Number(server.port || 5432) }, { startup: withoutStartupOptions });
    onTestFinished(() => proxy.close());
    const url = new URL(pg.url);
    url.port = String(proxy.port);
    const db = await openDatabase({ url: url.href, entities: clusterEntities, pgQueryTimeoutMs: 200 });
    dbs.push(db);
    // The sessions came without Nerve's settings, as a pooler's server sessions do.
    expect(await db.execute("select current_setting(?) as t", ["statement_timeout"], "get")).toEqual({ t: "0" });
    // Before, the query ran to its end (5 s here; as long as it took, anywhere).
    const err = await db.query("select pg_sleep(?) as slept", [5], "get").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "57014" });
    expect(db.queryTimeoutSetBy).toBe("transaction");
    await expect(queryTxOf(db).execute("select pg_sleep(?) as slept", [5], "get")).rejects.toMatchObject({ code: "unavailable" });
    // Set for the query's own transaction, with the idle timeout; answered as before.
    expect(await db.query("select current_setting(?) as t, current_setting(?) as idle", ["statement_timeout", "idle_in_transaction_session_timeout"], "get")).toEqual({ t: "200ms", idle: "2s" });
    expect(await db.query<{ n: number }[]>("select ?::int as n union all select ?::int", [1, 2], "all")).toEqual([{ n: 1 }, { n: 2 }]);
    // The leases' lock_timeout likewise, per statement.
    expect(await db.leaseExecute("select current_setting(?) as l, current_setting(?) as idle", ["lock_timeout", "idle_in_transaction_session_timeout"], "get")).toEqual({ l: "1s", idle: "2s" });
  });

  // The test's database, owned by and opened as a new role the server lets open `connections` at once (pool of 10);
  // the database and the role are dropped when the test ends.
  const openAsRoleLimitedTo = async (connections: number): Promise<Database> => {
    const role = `nerve_test_limited_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const name = new URL(pg.url).pathname.slice(1);
    await pgAdmin(`create role ${role} login connection limit ${connections}`);
    await pgAdmin(`alter database ${name} owner to ${role}`);
    onTestFinished(async () => {
      await pgAdmin(`drop database if exists ${name} with (force)`);
      await pgAdmin(`drop role if exists ${role}`);
    });
    const url = new URL(pg.url);
    url.username = role;
    const db = await openDatabase({ url: url.toString(), entities: clusterEntities, pgPool: 10 });
    dbs.push(db);
    return db;
  };

  it("a pool the server will not let grow serves its statements on the connections it has, none refused at once", async () => {
    // Was: Knex's default propagateCreateError, under which one refused connect (max_connections or the
    // role's limit reached) failed every statement waiting for a connection at once, although the open
    // ones would have served them in milliseconds: a third of a burst's commands and lease rounds failed.
    const db = await openAsRoleLimitedTo(5);
    const answers = await Promise.all(Array.from({ length: 100 }, () => db.execute("select pg_sleep(?) as slept", [0.01], "get").then(() => "answered", (err: unknown) => String((err as Error)?.message ?? err))));
    expect(answers.filter((a) => a !== "answered")).toEqual([]);
  });

  it("a pool with no connection open fails its statement at once when the server refuses for its limit", async () => {
    // Nothing to wait for: was 3 s (the acquire timeout), then Knex's "the pool is probably full" instead of
    // the server's own refusal (review).
    const db = await openAsRoleLimitedTo(3);
    // The main pool's two and the queries' one take the role's three: the leases' pool has none and can make none.
    await db.query("select 1 as one", [], "get");
    const started = performance.now();
    const err = await db.leaseExecute("select 1 as one", [], "get").then(() => undefined, (e: unknown) => e);
    expect(String((err as Error)?.message)).toMatch(/too many connections/);
    expect(performance.now() - started).toBeLessThan(1500);
  });

  it("a server out of reach fails every pool's statements at once, not after the acquire timeout", async () => {
    // Unlike the refusal above, nothing open serves them. Waiting out the acquire timeout (3 s) for a
    // connect that could not succeed held every request and lease round that long during a cut: the
    // instance lost its partitions, and a command forwarded to one right after went unanswered.
    const server = new URL(pg.url);
    const proxy = await tcpProxy({ host: server.hostname, port: Number(server.port || 5432) });
    onTestFinished(() => proxy.close());
    const url = new URL(pg.url);
    url.port = String(proxy.port);
    const db = await openDatabase({ url: url.href, entities: clusterEntities });
    dbs.push(db);
    await proxy.cut();
    for (const [pool, run] of [["main", db.execute], ["leases", db.leaseExecute], ["queries", db.query]] as const) {
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const err = await run("select 1 as one", [], "get").then(() => undefined, (e: unknown) => e);
        expect(err, pool).toBeDefined();
        expect(isTransientFailure(err), `${pool}: ${String(err)}`).toBe(true);
        expect(performance.now() - started, pool).toBeLessThan(1000);
      }
    }
  });
});
