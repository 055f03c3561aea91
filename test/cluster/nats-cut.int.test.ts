/**
 * An instance cut off from NATS but not from the database sits its leases out: the other instance takes
 * its partitions and consumers and serves them; once NATS is back, it rejoins and takes its share again.
 * Two real Nerve instances in this process on one PostgreSQL database and one nats-server, the first
 * reaching NATS through a TCP proxy the test cuts (before: it renewed its leases over PostgreSQL for as
 * long as the cut lasted, and every command to its partitions went unanswered).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { PARTITIONS, partitionOf, type PartitionLeases } from "../../src/cluster/index.js";
import { command, postgresAvailable, type Reply, startNatsServer, tcpProxy, tempPostgres, until, type NatsServerHandle, type TcpProxy, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!available)("an instance cut off from NATS", () => {
  let nats: NatsServerHandle;
  let pg: TempPostgres;
  let proxy: TcpProxy;
  let a: Nerve | undefined;
  let b: Nerve | undefined;
  let client: NatsConnection;
  const logger = createLogger("silent");
  const env = (id: string, url: string) => loadConfig({ NATS_URL: url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", NERVE_INSTANCE_ID: id });

  beforeAll(async () => {
    nats = await startNatsServer();
    pg = await tempPostgres();
    proxy = await tcpProxy({ host: "127.0.0.1", port: Number(new URL(nats.url).port) });
    a = await startNerve(env("cut-a", `nats://127.0.0.1:${proxy.port}`), logger);
    await until("a holds every partition", () => a!.ownership.held().length === PARTITIONS, 20_000);
    b = await startNerve(env("cut-b", nats.url), logger);
    await until("a and b split the partitions", () => b!.ownership.held().length > 0 && a!.ownership.held().length + b!.ownership.held().length === PARTITIONS, 20_000);
    client = await connect({ servers: nats.url, noAsyncTraces: true });
  }, 90_000);
  afterAll(async () => {
    await proxy?.restore();
    await client?.close();
    await Promise.allSettled([a?.stop(), b?.stop()]);
    await proxy?.close();
    await nats?.stop();
    await pg?.drop();
  }, 60_000);

  it("gives its partitions up to the other, which serves them; takes its share again once NATS is back", async () => {
    const cutOff = a!.ownership.held();
    const id = Array.from({ length: 500 }, (_, i) => `cut-${i}`).find((x) => cutOff.includes(partitionOf(x)))!;

    await proxy.cut();
    await until("b holds every partition", () => b!.ownership.held().length === PARTITIONS && a!.ownership.held().length === 0, 30_000);
    // A command to a partition the cut-off instance held is answered by the other.
    let reply: Reply | undefined;
    await until(
      "a command to one of a's partitions is answered",
      async () => {
        reply = await command(client, "users", "RegisterUser", id, { email: `${id}@example.com`, name: "Cut" }, { timeout: 2000, headers: { "Idempotency-Key": `reg-${id}` } }).catch(() => undefined);
        return reply?.body.ok === true;
      },
      20_000,
      200,
    );
    expect(reply!.headers["Nerve-Instance"]).toBe("cut-b");

    await proxy.restore();
    await until("a rejoins and takes its share again", () => a!.ownership.held().length > 0 && a!.ownership.held().length + b!.ownership.held().length === PARTITIONS, 30_000);
  }, 120_000);

  it("NATS down for every instance: each keeps what it holds (was: every lease lapsed, then moved about on the way back)", async () => {
    const before = { a: a!.ownership.held(), b: b!.ownership.held() };
    const lost = () => (a!.ownership as PartitionLeases).leases.stats.lost + (b!.ownership as PartitionLeases).leases.stats.lost;
    const lostBefore = lost();
    await nats.kill();
    // Past the 5 s after which a connection counts as cut, and past a lease's validity.
    await sleep(10_000);
    expect({ a: a!.ownership.held(), b: b!.ownership.held() }).toEqual(before);
    expect(lost()).toBe(lostBefore);
    await nats.restart();
    const id = Array.from({ length: 500 }, (_, i) => `down-${i}`).find((x) => before.a.includes(partitionOf(x)))!;
    await until(
      "a command to one of a's partitions is answered by a",
      async () => {
        const r = await command(client, "users", "RegisterUser", id, { email: `${id}@example.com`, name: "Down" }, { timeout: 2000, headers: { "Idempotency-Key": `reg-${id}` } }).catch(() => undefined);
        return r?.body.ok === true && r.headers["Nerve-Instance"] === "cut-a";
      },
      30_000,
      200,
    );
    expect(lost()).toBe(lostBefore);
  }, 120_000);

  it("NATS lost by one instance, then by the other too: nothing moves back to the first (was: placement over all handed it half again)", async () => {
    await proxy.cut();
    await until("b holds every partition", () => b!.ownership.held().length === PARTITIONS && a!.ownership.held().length === 0, 30_000);
    const lost = () => (a!.ownership as PartitionLeases).leases.stats.lost + (b!.ownership as PartitionLeases).leases.stats.lost;
    const acquiredByA = () => (a!.ownership as PartitionLeases).leases.stats.acquired;
    const before = { lost: lost(), acquiredByA: acquiredByA() };
    await nats.kill();
    // Past the 5 s after which a connection counts as cut, and past a lease's validity.
    await sleep(10_000);
    expect({ a: a!.ownership.held().length, b: b!.ownership.held().length }).toEqual({ a: 0, b: PARTITIONS });
    expect({ lost: lost(), acquiredByA: acquiredByA() }).toEqual(before);
    await nats.restart();
    await proxy.restore();
    await until("a rejoins and takes its share again", () => a!.ownership.held().length > 0 && a!.ownership.held().length + b!.ownership.held().length === PARTITIONS, 30_000);
  }, 120_000);
});
