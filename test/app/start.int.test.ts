import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { freePort, startNatsServer, tempSqlitePath, type NatsServerHandle } from "../support/index.js";

let nats: NatsServerHandle;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats?.stop();
});

async function connections(): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${nats.httpPort}/connz`);
  return ((await r.json()) as { num_connections: number }).num_connections;
}

describe("start-up", () => {
  it("serves the gateway on NERVE_HTTP_PORT beside the NATS API", async () => {
    const db = await tempSqlitePath();
    const port = await freePort();
    const nerve = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: String(port) }), createLogger("silent"));
    expect(nerve.gateway.port).toBe(port);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    await nerve.bus.execute({ context: "users", type: "RegisterUser", aggregateId: "m1", body: { email: "m1@example.com", name: "M" } });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^nerve_actors_live \d+/m);
    expect(metrics).toMatch(/^nerve_group_commit_writes_total [1-9]/m);
    // The relay's acks are deleted by the writer; the registration's event is published by now or soon.
    expect(await nerve.relay.flush(5_000)).toBe(true);
    const after = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(after).toMatch(/^nerve_outbox_rows_deleted_total [1-9]/m);
    expect(after).toMatch(/^nerve_outbox_backlog 0$/m);
    expect(after).toMatch(/^nerve_group_commit_admission_waits_total \d+$/m);
    expect(after).toMatch(/^nerve_group_commit_admission_wait_seconds_total [\d.e-]+$/m);
    expect(metrics).toMatch(/^nerve_consumer_pending\{consumer="notifications",stream="EVENTS_USERS"\} \d+/m);
    expect(metrics).toMatch(/^nerve_consumer_dead_letters\{consumer="catalog"\} 0/m);
    expect(metrics).toContain("nerve_gateway_connections");
    await nerve.stop();
    await db.cleanup();
  });

  it("fails cleanly when the HTTP port is taken: nothing is left running", async () => {
    const blocker = createServer().listen(0, "0.0.0.0");
    await new Promise((r) => blocker.once("listening", r));
    const port = (blocker.address() as { port: number }).port;
    const db = await tempSqlitePath();
    const before = await connections();
    const err = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: String(port) }), createLogger("silent")).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(String(err.message)).toMatch(new RegExp(String(port)));
    // The service's NATS connection is gone again.
    await expect.poll(connections, { timeout: 5000 }).toBe(before);
    blocker.close();
    await db.cleanup();
  });
});
