/**
 * NERVE_ROLES (CONTRACT.md §8): one process owns the aggregates and answers commands, another runs the
 * durable consumers and the WebSocket gateway. A paid order's access grant crosses between them: the
 * consumers' process manager sends its commands to the owner over NATS.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import WebSocket from "ws";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { command, postgresAvailable, query, startNatsServer, tempPostgres, until, type NatsServerHandle, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("roles split over two processes", () => {
  let nats: NatsServerHandle;
  let pg: TempPostgres;
  let client: NatsConnection;
  let owner: Nerve;
  let workers: Nerve;

  beforeAll(async () => {
    nats = await startNatsServer();
    pg = await tempPostgres();
    const env = (id: string, roles: string) => loadConfig({ NATS_URL: nats.url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", NERVE_INSTANCE_ID: id, NERVE_ROLES: roles, LOG_LEVEL: "silent" });
    const logger = createLogger("silent");
    owner = await startNerve(env("owner", "commands"), logger);
    workers = await startNerve(env("workers", "consumers,gateway"), logger);
    client = await connect({ servers: nats.url, noAsyncTraces: true });
  });
  afterAll(async () => {
    await client?.close();
    await workers?.stop().catch(() => undefined);
    await owner?.stop().catch(() => undefined);
    await pg?.drop();
    await nats?.stop();
  });

  it("gives every partition to the commands process and every consumer to the other", async () => {
    expect(owner.ownership.held()).toHaveLength(64);
    expect(workers.ownership.held()).toEqual([]);
    expect(workers.api).toBeUndefined();
    await until("the consumers run in the workers' process", () => workers.consumers.active().length === workers.consumers.runners.size, 15_000);
    expect(owner.consumers.active()).toEqual([]);
  });

  it("serves health and metrics everywhere, learners' WebSockets only with the gateway role", async () => {
    const base = (n: Nerve) => `http://127.0.0.1:${n.gateway.port}`;
    expect((await fetch(`${base(owner)}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${base(owner)}/metrics`)).text()).toContain("nerve_requests_total");
    // No token: the gateway refuses with 401; an instance without the role has no gateway (404).
    const upgrade = (n: Nerve) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${base(n).replace("http", "ws")}/v1/ws`);
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("open", () => reject(new Error("opened without a token")));
        ws.on("error", () => undefined);
      });
    expect(await upgrade(owner)).toBe(404);
    expect(await upgrade(workers)).toBe(401);
  });

  it("answers commands from the owner, and the workers' process managers reach it", async () => {
    const r = await command(client, "users", "RegisterUser", "r-user", { email: "r@example.com", name: "R" });
    expect(r.headers["Nerve-Instance"]).toBe("owner");
    expect((await command(client, "policies", "CreatePolicy", "r-pol", { name: "Std", type: "standard", refund_period_days: 14 })).body.ok).toBe(true);
    expect((await command(client, "courses", "CreateCourse", "r-course", { title: "R", instructor_id: "i1", policy_id: "r-pol", price: { amount: 5, currency: "EUR" } })).body.ok).toBe(true);
    expect((await command(client, "orders", "PlaceOrder", "r-order", { user_id: "r-user", course_ids: ["r-course"] })).body.ok).toBe(true);
    expect((await command(client, "orders", "MarkOrderPaid", "r-order", { payment_id: "p" })).body.ok).toBe(true);
    let items: unknown[] = [];
    await until("access is granted through the workers' access-grants", async () => {
      items = (await query(client, "access", "GetLearnerProgress", { user_id: "r-user" })).body.result?.items ?? [];
      return items.length === 1;
    }, 20_000);
    expect(items[0]).toMatchObject({ course_id: "r-course", status: "active" });
  });
});
