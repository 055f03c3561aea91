/**
 * A database that went away is `unavailable` (retry) for every request that meets it — a query, an
 * idempotency lookup, an actor's load — not `internal` (a bug, not to retry). Real PostgreSQL behind a
 * TCP proxy the test cuts and restores.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { captureLog, command, postgresAvailable, query, startTestNerve, proxiedPostgres, until, type CapturedLog, type TcpProxy, type TempPostgres, type TestNerve } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("requests while the database is out of reach", () => {
  let pg: TempPostgres;
  let proxy: TcpProxy;
  let t: TestNerve;
  let log: CapturedLog;
  beforeAll(async () => {
    let url: string;
    ({ pg, proxy, url } = await proxiedPostgres());
    log = captureLog("info");
    t = await startTestNerve({ NERVE_DB: url }, { logger: log.logger });
  });
  afterAll(async () => {
    await proxy?.restore();
    await t?.close();
    await proxy?.close();
    await pg?.drop();
  });

  it("answers unavailable, not internal, and serves again once it is back", async () => {
    expect((await command(t.client, "users", "RegisterUser", "out1", { email: "out1@example.com", name: "O" })).body.ok).toBe(true);
    expect((await query(t.client, "access", "GetLearnerProgress", { user_id: "out1" })).body).toEqual({ ok: true, result: { items: [] } });

    await proxy.cut();
    const progress = await query(t.client, "access", "GetLearnerProgress", { user_id: "out1" });
    const keyed = await command(t.client, "users", "RegisterUser", "out2", { email: "out2@example.com", name: "P" }, { headers: { "Idempotency-Key": "out2-register" } });
    for (const r of [progress, keyed]) {
      expect(r.body.ok, JSON.stringify(r.body)).toBe(false);
      expect(r.body.error.code, JSON.stringify(r.body)).toBe("unavailable");
    }
    expect(log.errors().filter((l) => l.msg === "request failed")).toEqual([]);

    await proxy.restore();
    await until("queries are served again", async () => (await query(t.client, "access", "GetLearnerProgress", { user_id: "out1" })).body.ok === true, 20_000);
    const again = await command(t.client, "users", "RegisterUser", "out2", { email: "out2@example.com", name: "P" }, { headers: { "Idempotency-Key": "out2-register" } });
    expect(again.body).toMatchObject({ ok: true, aggregate_version: 1 });
  });

  it("answers a bug internal with the correlation id it was logged under: the request's, else a new one", async () => {
    // Not an outage: the query's table is gone, which no retry mends.
    await t.nerve.db.execute("alter table learner_access rename to learner_access_gone", [], "run");
    try {
      const named = await query(t.client, "access", "GetLearnerProgress", { user_id: "out1" }, { headers: { "Correlation-Id": "ticket-42" } });
      const unnamed = await query(t.client, "access", "GetLearnerProgress", { user_id: "out1" });
      expect(named.body.error).toMatchObject({ code: "internal", details: { correlation_id: "ticket-42" } });
      expect(unnamed.body.error.code).toBe("internal");
      const generated = unnamed.body.error.details.correlation_id;
      expect(generated).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
      const lines = log.errors().filter((l) => l.msg === "request failed");
      expect(lines.map((l) => l.correlation_id)).toEqual(["ticket-42", generated]);
    } finally {
      await t.nerve.db.execute("alter table learner_access_gone rename to learner_access", [], "run");
    }
  });

  it("writes one line per background task for a cut of seconds, not one per try, and says when each works again", async () => {
    const from = log.lines.length;
    await proxy.cut();
    // Eight seconds: a lease round a second for each of the two groups and a timer poll a second, each of
    // which wrote its own error line (123 lines in a 20 s cut, with the relay's passes when it reads the table).
    await new Promise((r) => setTimeout(r, 8000));
    await proxy.restore();
    const tasks = ["leases partitions", "leases consumers", "timers"];
    await until("every background task works again", () => tasks.every((task) => log.lines.slice(from).some((l) => l.task === task && l.msg === `${task}: working again`)), 20_000);
    const failed = log.lines.slice(from).filter((l) => l.level >= 50 && [...tasks, "outbox relay"].includes(String(l.task)));
    for (const task of tasks) expect(failed.filter((l) => l.task === task), task).toHaveLength(1);
    // The relay reads the table only when it has a reason to (live, it is handed its rows): at most one line.
    expect(failed.filter((l) => l.task === "outbox relay").length).toBeLessThanOrEqual(1);
    const back = log.lines.slice(from).filter((l) => tasks.includes(String(l.task)) && String(l.msg).endsWith("working again"));
    // Every lease lapsed and came back: a line per group and round, not one per lease (74 each way before).
    const leaseLines = (msgs: string[]) => log.lines.slice(from).filter((l) => msgs.includes(String(l.msg)));
    expect(leaseLines(["lease lost", "leases lost"]).reduce((n, l) => n + Number(l.count ?? 1), 0)).toBeGreaterThan(60);
    expect(leaseLines(["lease lost", "leases lost"]).length).toBeLessThanOrEqual(6);
    expect(leaseLines(["lease acquired", "leases acquired"]).length).toBeLessThanOrEqual(6);
    // Each counted its tries: several failed during the cut, every one of them counted.
    for (const l of back) expect(Number(l.failures), String(l.task)).toBeGreaterThan(1);
  }, 60_000);
});
