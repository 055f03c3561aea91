/**
 * Knex's own messages (its pool's "Connection Error: …" after PostgreSQL ended a pooled session) go where
 * the service says — its JSON log — not to the console.
 */
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { openDatabase, type DriverLog } from "../../src/persistence/index.js";
import { postgresAvailable, tempPostgres } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("Knex's messages on PostgreSQL", () => {
  it("reach the driverLog, not the console, when a pooled session was ended by the server", async () => {
    const pg = await tempPostgres();
    const told: string[] = [];
    const driverLog: DriverLog = { warn: (m) => told.push(String(m)), error: (m) => told.push(String(m)), deprecate: (m) => told.push(String(m)), debug: () => undefined };
    const db = await openDatabase({ url: pg.url, entities: [], pgPool: 2, driverLog });
    onTestFinished(async () => {
      await db.close();
      await pg.drop();
    });
    const console = vi.spyOn(globalThis.console, "log");
    onTestFinished(() => console.mockRestore());
    // Both pooled sessions in use once, then ended by the server (an administrator, a failover, a restart).
    await Promise.all([db.execute("select pg_sleep(0.05)", [], "get"), db.execute("select pg_sleep(0.05)", [], "get")]);
    const admin = await openDatabase({ url: pg.url, entities: [] });
    try {
      await admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()", [], "all");
    } finally {
      await admin.close();
    }
    // The next statements find the ended sessions in the pool: Knex says so, and makes new ones.
    const deadline = Date.now() + 10_000;
    while (!told.some((m) => m.startsWith("Connection Error")) && Date.now() < deadline) {
      await db.execute("select 1 as one", [], "get").catch(() => undefined);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(told.some((m) => m.startsWith("Connection Error")), told.join("\n")).toBe(true);
    expect(console.mock.calls.filter((c) => String(c[0]).includes("Connection Error"))).toEqual([]);
    expect(await db.execute("select 1 as one", [], "get")).toEqual({ one: 1 });
  });
});
