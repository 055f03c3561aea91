import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { command, query, startTestNerve, type TestNerve } from "../support/index.js";
import { openDatabase } from "../../src/persistence/index.js";

// PostgreSQL is how Nerve scales out. The machine runs one; without it this file says so and skips.
const ADMIN_URL = process.env.NERVE_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/postgres";
const dbName = `nerve_test_${randomBytes(4).toString("hex")}`;

async function admin(sql: string): Promise<boolean> {
  try {
    const db = await openDatabase({ url: ADMIN_URL, entities: [] });
    await db.connection.execute(sql);
    await db.close();
    return true;
  } catch {
    return false;
  }
}

const available = await admin("select 1");
let t: TestNerve;

describe.skipIf(!available)("the command path on PostgreSQL", () => {
  beforeAll(async () => {
    expect(await admin(`create database ${dbName}`)).toBe(true);
    t = await startTestNerve({ NERVE_DB: ADMIN_URL.replace(/\/[^/]*$/, `/${dbName}`) });
  });
  afterAll(async () => {
    await t?.close();
    await admin(`drop database if exists ${dbName} with (force)`);
  });

  it("stores, answers, enforces unique e-mail and reads back from PostgreSQL", async () => {
    const r = await command(t.client, "users", "RegisterUser", "pg1", { email: "pg@example.com", name: "P" });
    expect(r.body).toMatchObject({ ok: true, aggregate_version: 1 });
    const dup = await command(t.client, "users", "RegisterUser", "pg2", { email: "PG@example.com", name: "Q" });
    expect(dup.body.error.code).toBe("conflict");
    await Promise.all(Array.from({ length: 20 }, (_, i) => command(t.client, "users", "UpdateUserProfile", "pg1", { profile_data: { bio: `b${i}` } })));
    const g = await query(t.client, "users", "GetUser", { user_id: "pg1" });
    expect(g.body.result.version).toBe(21);
    const h = await query(t.client, "audit", "History", { aggregate_type: "User", aggregate_id: "pg1" });
    expect(h.body.result.events.map((e: { aggregate_version: number }) => e.aggregate_version)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    expect(await t.nerve.relay.flush(5000)).toBe(true);
  });

  it("takes a later version's traceparent, of any length, as version 00 (was: unavailable, its tail too long for the event row)", async () => {
    const [id, parent] = ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"];
    const headers = { traceparent: `01-${id}-${parent}-01-${"f".repeat(200)}` };
    const r = await command(t.client, "users", "RegisterUser", "pg-trace", { email: "pg-trace@example.com", name: "T" }, { headers });
    expect(r.body).toMatchObject({ ok: true, aggregate_version: 1 });
    expect(await t.nerve.relay.flush(5000)).toBe(true);
    const m = await (await jetstreamManager(t.client)).streams.getMessage("EVENTS_USERS", { last_by_subj: "events.users.UserRegistered.pg-trace" });
    expect(m?.header.get("traceparent")).toBe(`00-${id}-${parent}-01`);
  });
});
