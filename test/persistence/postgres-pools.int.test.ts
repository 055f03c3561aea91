/**
 * PostgreSQL's connection budgets, on a real server: a burst of slow read-model queries neither takes
 * the leases' connections (the instance keeps every partition, its renewals go on) nor the main pool's
 * (a command path's statement is answered); the queries beyond the budget are answered `unavailable`;
 * a query past its statement_timeout is cut off, `unavailable` too.
 */
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { pino } from "pino";
import { NerveError } from "../../contracts/index.js";
import { PARTITIONS, PartitionLeases, clusterEntities } from "../../src/cluster/index.js";
import { queryTxOf } from "../../src/consumers/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, tcpProxy, tempPostgres, withoutStartupOptions, type TempPostgres } from "../support/index.js";

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
});
