/**
 * nerve_outbox_pending with several instances on one PostgreSQL database: each instance counts the
 * outbox rows of the partitions it owns now (what its relay publishes), an instance without the
 * commands role reports 0, and the figures add up to the table — not the whole shared table on each.
 * nerve_outbox_oldest_pending_age_seconds likewise reads the oldest row of its own partitions only.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gauge } from "prom-client";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { PARTITIONS, partitionOf } from "../../src/cluster/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { Repository } from "../../src/persistence/index.js";
import { postgresAvailable, startNatsServer, tempPostgres, until, type NatsServerHandle, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

/** A gauge's value as a scrape reads it (its collect runs; the other gauges' do not). */
async function gauge(n: Nerve, name: string): Promise<number> {
  const metric = n.gateway.metrics.registry.getSingleMetric(name) as Gauge | undefined;
  const values = (await metric!.get()).values;
  expect(values).toHaveLength(1);
  return values[0]!.value;
}
const pending = (n: Nerve) => gauge(n, "nerve_outbox_pending");
const oldestAge = (n: Nerve) => gauge(n, "nerve_outbox_oldest_pending_age_seconds");

describe.skipIf(!available)("nerve_outbox_pending over two owners and a consumers-only instance", () => {
  let nats: NatsServerHandle;
  let pg: TempPostgres;
  let alpha: Nerve;
  let beta: Nerve;
  let workers: Nerve;

  beforeAll(async () => {
    nats = await startNatsServer();
    pg = await tempPostgres();
    const config = (id: string, roles: string) =>
      loadConfig({ NATS_URL: nats.url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", NERVE_INSTANCE_ID: id, NERVE_ROLES: roles, NERVE_SHUTDOWN_MS: "3000", LOG_LEVEL: "silent" });
    const logger = createLogger("silent");
    alpha = await startNerve(config("alpha", "commands"), logger);
    beta = await startNerve(config("beta", "commands"), logger);
    workers = await startNerve(config("workers", "consumers,gateway"), logger);
    await until(
      "alpha and beta hold every partition between them",
      () => alpha.ownership.held().length + beta.ownership.held().length === PARTITIONS && alpha.ownership.held().length > 0 && beta.ownership.held().length > 0,
      20_000,
    );
  }, 60_000);
  afterAll(async () => {
    for (const n of [workers, beta, alpha]) await n?.stop().catch(() => undefined);
    await nats?.stop();
    await pg?.drop(); // last: it throws when the database stays behind
  }, 60_000);

  it("counts on each instance the rows of its own partitions only, and they add up to the table", async () => {
    // JetStream away: committed events stay in the outbox, as when NerveOutboxNotDraining fires.
    await nats.kill();
    const ids = (n: Nerve, count: number) => {
      const out: string[] = [];
      for (let i = 0; out.length < count; i++) if (n.ownership.fence(partitionOf(`${n.ownership.instanceId}-u${i}`))) out.push(`${n.ownership.instanceId}-u${i}`);
      return out;
    };
    // Each owner commits its own aggregates' commands in-process (no NATS on that path).
    const mine = new Map<Nerve, string[]>([[alpha, ids(alpha, 5)], [beta, ids(beta, 3)]]);
    for (const [n, own] of mine) {
      for (const id of own) await n.bus.execute({ context: "users", type: "RegisterUser", aggregateId: id, body: { email: `${id}@example.com`, name: id } });
    }
    const table = await new Repository(alpha.db).outboxSize();
    expect(table).toBe(8);

    expect(await pending(alpha)).toBe(5);
    expect(await pending(beta)).toBe(3);
    // It owns nothing and runs no relay: nothing of the shared outbox is its to publish.
    expect(await pending(workers)).toBe(0);

    // alpha's events happened ten minutes ago (not waited for): only alpha's oldest row is that old.
    const alphaIds = mine.get(alpha)!;
    await alpha.db.execute(`update nerve_events set occurred_on = ? where aggregate_id in (${alphaIds.map(() => "?").join(",")})`, [new Date(Date.now() - 600_000).toISOString(), ...alphaIds], "run");
    expect(await oldestAge(alpha)).toBeGreaterThanOrEqual(600);
    expect(await oldestAge(beta)).toBeLessThan(600);
    expect(await oldestAge(beta)).toBeGreaterThanOrEqual(0);
    expect(await oldestAge(workers)).toBe(0);

    // JetStream back: the owners' relays publish their rows and the figures fall to 0.
    await nats.restart();
    await until("the owners' figures drain", async () => (await pending(alpha)) === 0 && (await pending(beta)) === 0, 30_000, 200);
    expect(await oldestAge(alpha)).toBe(0);
    expect(await oldestAge(beta)).toBe(0);
    expect(await new Repository(alpha.db).outboxSize()).toBe(0);
  }, 60_000);
});
