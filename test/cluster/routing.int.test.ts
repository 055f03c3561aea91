/**
 * Two Nerve instances on one PostgreSQL database split the partitions, and a command sent to any
 * of them — or straight to `cmd.…` — is decided by its partition's owner, in both routing modes
 * (CONTRACT.md §8): with the server's mapping (no extra hop) and without it (forwarding).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { PARTITIONS, partitionOf } from "../../src/cluster/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { command, postgresAvailable, query, startNatsServer, tempPostgres, type NatsServerHandle, type TempPostgres } from "../support/index.js";
import { RawNats, headerBlock } from "../api/raw-nats.js";
import { decodeMsgPack, encodeMsgPack } from "../../contracts/index.js";

const available = await postgresAvailable();
const MAPPING = fileURLToPath(new URL("../../deploy/nats/partition-mapping.conf", import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

describe.skipIf(!available).each([
  { mode: "forward", mapped: false },
  { mode: "mapped", mapped: true },
])("two instances, routing by $mode", ({ mode, mapped }) => {
  let nats: NatsServerHandle;
  let pg: TempPostgres;
  let confDir: string | undefined;
  let client: NatsConnection;
  const nerves: Nerve[] = [];

  beforeAll(async () => {
    if (mapped) {
      confDir = await mkdtemp(join(tmpdir(), "nerve-routing-"));
      await writeFile(join(confDir, "nats.conf"), `${await readFile(MAPPING, "utf8")}\n`);
    }
    nats = await startNatsServer(confDir ? { config: join(confDir, "nats.conf") } : {});
    pg = await tempPostgres();
    const logger = createLogger("silent");
    for (const id of ["alpha", "beta"]) {
      nerves.push(await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", NERVE_INSTANCE_ID: id, LOG_LEVEL: "silent" }), logger));
    }
    client = await connect({ servers: nats.url, noAsyncTraces: true });
    // Settled: every partition held, and no former owner's subscription still answering `unavailable`.
    await until(
      "the two instances hold every partition between them",
      () => nerves[0]!.ownership.held().length + nerves[1]!.ownership.held().length === PARTITIONS && nerves[1]!.ownership.held().length > 0 && nerves.every((n) => n.api!.lingering().length === 0),
    );
  });
  afterAll(async () => {
    await client?.close();
    for (const n of nerves) await n.stop().catch(() => undefined);
    await nats?.stop();
    if (confDir) await rm(confDir, { recursive: true, force: true });
    await pg?.drop(); // last: it throws when the database stays behind
  });

  it(`detects the routing mode (${mode})`, () => {
    for (const n of nerves) expect(n.api!.routing).toBe(mode);
  });

  it("has each partition decided by its owner, whichever instance the request reached", async () => {
    const owner = (id: string) => nerves.find((n) => n.ownership.fence(partitionOf(id)))!.ownership.instanceId;
    const ids = Array.from({ length: 80 }, (_, i) => `${mode}-user-${i}`);
    const replies = await Promise.all(ids.map((id) => command(client, "users", "RegisterUser", id, { email: `${id}@example.com`, name: id })));
    for (const [i, r] of replies.entries()) {
      expect(r.body, ids[i]).toMatchObject({ ok: true, aggregate_version: 1 });
      expect(r.headers["Nerve-Instance"], ids[i]).toBe(owner(ids[i]!));
    }
    expect(new Set(replies.map((r) => r.headers["Nerve-Instance"]))).toEqual(new Set(["alpha", "beta"]));
    if (!mapped) expect(nerves[0]!.api!.stats.forwarded + nerves[1]!.api!.stats.forwarded).toBeGreaterThan(0);
    // Reads see every answered command on either instance: the owner's actor, or the committed snapshot.
    for (const id of ids.slice(0, 10)) {
      const r = await query(client, "users", "GetUser", { user_id: id });
      expect(r.body.result).toMatchObject({ user_id: id, version: 1 });
    }
  });

  it("hands the owner the request's headers as the client sent them (a non-ASCII value, exactly)", async () => {
    const raw = await RawNats.connect(nats.port);
    try {
      const correlation = "\u3000corr\u00A0";
      const ids = Array.from({ length: 24 }, (_, i) => `${mode}-exact-${i}`);
      for (const id of ids) {
        const r = await raw.request(`cmd.users.RegisterUser.${id}`, headerBlock(["Content-Type: application/msgpack", `Correlation-Id: ${correlation}`]), encodeMsgPack({ email: `${id}@example.com`, name: id }));
        if (r === "timeout") throw new Error(`no reply for ${id}`);
        const d = decodeMsgPack(r.data);
        expect(d.ok && (d.value as { ok: boolean }).ok, id).toBe(true);
      }
      for (const id of ids) expect((await nerves[0]!.bus.repo.history("User", id)).map((e) => e.correlation_id), id).toEqual([correlation]);
    } finally {
      raw.close();
    }
  });

  it("runs each durable consumer on exactly one instance, and process managers reach aggregates on the other", async () => {
    const names = [...nerves[0]!.consumers.runners.keys()].sort();
    await until("every consumer runs somewhere", () => nerves[0]!.consumers.active().length + nerves[1]!.consumers.active().length === names.length);
    expect([...nerves[0]!.consumers.active(), ...nerves[1]!.consumers.active()].sort()).toEqual(names);

    // A paid order: access-grants (on one instance) grants access on the access record's owner (maybe the other).
    const u = `${mode}-buyer`;
    expect((await command(client, "users", "RegisterUser", u, { email: `${u}@example.com`, name: "Buyer" })).body.ok).toBe(true);
    expect((await command(client, "policies", "CreatePolicy", `${mode}-pol`, { name: "Std", type: "standard", refund_period_days: 14 })).body.ok).toBe(true);
    const courses = Array.from({ length: 6 }, (_, i) => `${mode}-course-${i}`);
    for (const c of courses) expect((await command(client, "courses", "CreateCourse", c, { title: c, instructor_id: "i1", policy_id: `${mode}-pol`, price: { amount: 100, currency: "EUR" } })).body.ok).toBe(true);
    expect((await command(client, "orders", "PlaceOrder", `${mode}-order`, { user_id: u, course_ids: courses })).body.ok).toBe(true);
    expect((await command(client, "orders", "MarkOrderPaid", `${mode}-order`, { payment_id: "pay-1" })).body.ok).toBe(true);
    let items: unknown[] = [];
    const deadline = Date.now() + 20_000;
    while (items.length < courses.length && Date.now() < deadline) {
      items = (await query(client, "access", "GetLearnerProgress", { user_id: u })).body.result?.items ?? [];
      await sleep(100);
    }
    expect(items).toHaveLength(courses.length);
  });

  it("keeps one aggregate's commands in order through one owner", async () => {
    const id = `${mode}-busy`;
    expect((await command(client, "users", "RegisterUser", id, { email: `${id}@example.com`, name: "B" })).body.ok).toBe(true);
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => command(client, "users", "UpdateUserProfile", id, { profile_data: { bio: `b${i}` } })));
    expect(replies.map((r) => r.body.aggregate_version).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 2));
  });
});
