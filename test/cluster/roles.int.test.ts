/**
 * NERVE_ROLES (CONTRACT.md §8): one process owns the aggregates and answers commands, another runs the
 * durable consumers and the WebSocket gateway. A paid order's access grant crosses between them: the
 * consumers' process manager sends its commands to the owner over NATS. The operator's replay,
 * replay-status and retry-dead-letter reach the `nerve` service — here only the owner, which runs no
 * consumer — and are forwarded to the instance that does.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import WebSocket from "ws";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { AdminSubjects } from "../../src/api/admin-subjects.js";
import { command, postgresAvailable, query, request, startNatsServer, tempPostgres, until, type NatsServerHandle, type TempPostgres } from "../support/index.js";
import { nerve } from "../cli/support.js";
import { gatherInstances } from "../../src/cli/status-report.js";

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
    await workers.gateway.warmedUp; // its WebSockets are served once the start-up replay is done
    client = await connect({ servers: nats.url, noAsyncTraces: true });
  });
  afterAll(async () => {
    await client?.close();
    await workers?.stop().catch(() => undefined);
    await owner?.stop().catch(() => undefined);
    await nats?.stop();
    await pg?.drop(); // last: it throws when the database stays behind
  });

  it("each answers `status` naming both as its lease groups' live members, and the CLI's gathering waits for both", async () => {
    // Each reads the membership at its lease rounds (a second apart): the first started may not know the second yet.
    await until("each knows both", async () => (await gatherInstances(client, 5000)).every((i) => i.members?.length === 2), 5000);
    const missing: string[] = [];
    const got = await gatherInstances(client, 5000, [], missing);
    expect(got.map((i) => i.instance)).toEqual(["owner", "workers"]);
    for (const i of got) expect(i.members, i.instance).toEqual(["owner", "workers"]);
    expect(missing).toEqual([]);
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

  // Deterministic: only the owner serves the `nerve` service (it alone has the commands role), and it
  // holds no consumer — every admin request below reaches the instance that does NOT run the consumer.
  describe("admin requests for a consumer that runs on the other instance", () => {
    const cli = (...args: string[]) => nerve({ NATS_URL: nats.url }, ...args);
    const admin = async (subject: string, body: unknown) => (await request(client, subject, body, { json: true })).body;
    const welcomes = async (user: string) => (await query(client, "notifications", "ListNotifications", { user_id: user })).body.result?.items ?? [];

    it("replays it from the CLI: the owner forwards the replay to the workers, which run it to done === total", async () => {
      await until("notifications runs in the workers' process", () => workers.consumers.active().includes("notifications"), 15_000);
      for (let i = 0; i < 5; i++) expect((await command(client, "users", "RegisterUser", `rp-${i}`, { email: `rp-${i}@example.com`, name: `P${i}` })).body.ok).toBe(true);
      await until("the workers' notifications saw them", async () => (await welcomes("rp-4")).length === 1, 15_000);
      const before = await welcomes("rp-2");

      const run = await cli("replay", "notifications");
      expect(run.code, run.out).toBe(0);
      const replayed = /replayed (\d+) of \1 events into notifications on instance workers/.exec(run.out);
      expect(replayed, run.out).not.toBeNull();
      expect(Number(replayed![1])).toBeGreaterThanOrEqual(6);
      expect(await welcomes("rp-2")).toEqual(before);

      // The status, asked of the service (the owner) or of the workers' own subject: the workers' replay.
      for (const subject of [AdminSubjects.ReplayStatus, "nerve.admin.instance.workers.replay-status"]) {
        const status = await admin(subject, { consumer: "notifications" });
        expect(status, subject).toMatchObject({ ok: true, result: { consumer: "notifications", running: false, instance: "workers" } });
        expect(status.result.done, subject).toBe(status.result.total);
        expect(status.result.total, subject).toBe(Number(replayed![1]));
      }
      // The owner's own subject answers for the owner alone, and says where the consumer runs.
      expect(await admin("nerve.admin.instance.owner.replay-status", { consumer: "notifications" })).toMatchObject({
        ok: false,
        error: { code: "not_found", message: expect.stringMatching(/no replay of notifications has run on instance owner.*runs on instance workers/) },
      });
    });

    it("retries a read model's dead letter from the owner: forwarded to the workers, handled, gone", async () => {
      const envelope = {
        event_id: "0190a0b0-0000-7000-8000-0000000000bb",
        event_type: "UserRegistered",
        event_version: 1,
        occurred_on: new Date().toISOString(),
        aggregate_type: "User",
        aggregate_id: "dl-roles",
        aggregate_version: 1,
        correlation_id: "c-dl-roles",
        causation_id: null,
        payload: { user_id: "dl-roles", email: "dl-roles@example.com", name: "D" },
      };
      const dead = owner.consumers.deadLetters;
      await dead.add({ consumer: "notifications", stream: "EVENTS_USERS", stream_seq: 1, event_id: envelope.event_id, event_type: "UserRegistered", envelope: JSON.stringify(envelope), reason: "test", attempts: 5 });
      const [letter] = await dead.list("notifications");
      const run = await cli("retry-dead-letter", String(letter!.id));
      expect(run.code, run.out).toBe(0);
      expect(run.out).toContain("handled");
      expect((await welcomes("dl-roles")).map((n: { kind: string }) => n.kind)).toEqual(["welcome"]);
      expect(await dead.list("notifications")).toEqual([]);
    });

    it("refuses bad input with a clear message, forwarded or not", async () => {
      expect(await admin(AdminSubjects.Replay, { consumer: "nobody" })).toMatchObject({ ok: false, error: { code: "not_found", message: expect.stringContaining("no consumer nobody") } });
      expect(await admin(AdminSubjects.ReplayStatus, {})).toMatchObject({ ok: false, error: { code: "invalid_request", message: expect.stringContaining("consumer must name a consumer, one of: ") } });
      expect(await admin(AdminSubjects.RetryDeadLetter, { id: 999_999 })).toMatchObject({ ok: false, error: { code: "not_found", message: "no dead letter 999999" } });
      for (const id of ["7", 0, 1.5, null]) {
        expect(await admin(AdminSubjects.RetryDeadLetter, { id }), JSON.stringify(id)).toMatchObject({ ok: false, error: { code: "invalid_request", message: expect.stringMatching(/^id must be a whole number/) } });
      }
      // An instance's own subject never forwards: the owner does not run notifications.
      expect(await admin("nerve.admin.instance.owner.replay", { consumer: "notifications" })).toMatchObject({
        ok: false,
        error: { code: "unavailable", message: expect.stringContaining("notifications runs on instance workers") },
      });
    });

    it("answers unavailable when no instance runs the consumer (the workers stopped)", async () => {
      await workers.stop();
      const r = await admin(AdminSubjects.Replay, { consumer: "notifications" });
      expect(r).toMatchObject({ ok: false, error: { code: "unavailable", message: expect.stringContaining("no instance runs notifications now") } });
    });
  });
});
