/**
 * nerve_pg_queries_total: on PostgreSQL the read models' queries go through a gate (NERVE_PG_QUERIES at
 * once, 64 waiting, statement_timeout), and what it refused or had cancelled reaches /metrics — before,
 * only SQLite's query thread was exported, and NerveQueriesRefused never fired on PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { MAX_WAITING_QUERIES, QueriesOverloaded } from "../../src/persistence/index.js";
import { postgresAvailable, startNatsServer, tempPostgres, type NatsServerHandle, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("PostgreSQL's query gate on /metrics", () => {
  let nats: NatsServerHandle;
  let pg: TempPostgres;
  let nerve: Nerve;

  beforeAll(async () => {
    nats = await startNatsServer();
    pg = await tempPostgres();
    // One query at a time, each cut off after 300 ms.
    const config = loadConfig({ NATS_URL: nats.url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", NERVE_PG_QUERIES: "1", NERVE_PG_QUERY_TIMEOUT_MS: "300", LOG_LEVEL: "silent" });
    nerve = await startNerve(config, createLogger("silent"));
  });
  afterAll(async () => {
    await nerve?.stop().catch(() => undefined);
    await nats?.stop();
    await pg?.drop();
  });

  it("counts queries answered, cancelled by statement_timeout and refused with 64 waiting", async () => {
    const { db } = nerve;
    // The one turn taken by a query that statement_timeout cuts off, 64 waiting behind it, and one more refused at once.
    const slow = db.query("select pg_sleep(30) as slept", [], "get").catch((e: unknown) => e);
    const waiting = Array.from({ length: MAX_WAITING_QUERIES }, (_, i) => db.query<{ n: number }>("select ?::int as n", [i], "get").catch((e: unknown) => e));
    const refused = await db.query("select 1 as n", [], "get").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(QueriesOverloaded);
    expect(await slow).toMatchObject({ code: "57014" });
    await Promise.all(waiting);
    const stats = { ...db.queryGate! };
    expect(stats.cancelled).toBe(1);
    expect(stats.refused).toBeGreaterThanOrEqual(1);

    const text = await (await fetch(`http://127.0.0.1:${nerve.gateway.port}/metrics`)).text();
    const value = (outcome: string) => Number(new RegExp(`^nerve_pg_queries_total\\{outcome="${outcome}"\\} (\\d+)$`, "m").exec(text)?.[1]);
    expect(text).toMatch(/^# TYPE nerve_pg_queries_total counter$/m);
    expect(value("cancelled")).toBe(1);
    expect(value("refused")).toBe(stats.refused);
    expect(value("failed")).toBe(stats.failures - stats.cancelled);
    // The waiters that had their turn, and whatever the service itself asked (the dead letters' count).
    expect(value("ok")).toBeGreaterThanOrEqual(stats.queries - stats.failures);
    expect(stats.queries - stats.failures).toBeGreaterThanOrEqual(MAX_WAITING_QUERIES + 1 - stats.refused);
    expect(text).not.toMatch(/^nerve_sqlite_queries_total/m);
  });
});
