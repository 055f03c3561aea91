/**
 * The service's consumer inbox prune as `startNerve` wires it (SQLite, its commits where NERVE_SQLITE_WRITER's default puts them, a real nats-server):
 * a pass forgets the projections' rows past NERVE_INBOX_RETENTION_DAYS and no process manager's, /metrics
 * counts it, and `off` leaves it out.
 */
import { afterEach, describe, expect, it } from "vitest";
import { v7 } from "uuid";
import { openDatabase } from "../../src/persistence/index.js";
import { startTestNerve, type TestNerve } from "../support/index.js";

const DAY = 86_400_000;
let t: TestNerve | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const inbox = async (consumer: string) =>
  (await t!.nerve.db.execute<{ event_id: string }[]>("select event_id from consumer_inbox where consumer = ? order by event_id", [consumer], "all")).map((r) => r.event_id);

async function insert(consumer: string, daysAgo: number): Promise<string> {
  const id = v7({ msecs: Date.now() - daysAgo * DAY });
  await t!.nerve.db.execute("insert into consumer_inbox (consumer, event_id, handled_on) values (?, ?, ?)", [consumer, id, new Date().toISOString()], "run");
  return id;
}

describe("the consumer inbox prune of a running service", () => {
  it("forgets projections' rows older than NERVE_INBOX_RETENTION_DAYS, keeps the process managers', and says so on /metrics", async () => {
    t = await startTestNerve({ NERVE_INBOX_RETENTION_DAYS: "3" });
    const prune = t.nerve.inboxPrune!;
    expect(prune.consumers).toContain("catalog");
    const kept = { catalog: await insert("catalog", 2), grants: [await insert("access-grants", 30), await insert("access-grants", 1)] };
    await insert("catalog", 4);
    await insert("catalog", 40);
    await insert("notifications", 3.5);

    const r = await prune.run();

    expect(r.deleted).toMatchObject({ catalog: 2, notifications: 1 });
    expect(await inbox("catalog")).toEqual([kept.catalog]);
    expect(await inbox("notifications")).toEqual([]);
    expect(await inbox("access-grants")).toEqual(kept.grants.sort());
    // The first scrape of this service: its text is made now, after the pass.
    const metrics = await (await fetch(`http://127.0.0.1:${t.nerve.gateway.port}/metrics`)).text();
    expect(metrics).toMatch(/^# TYPE nerve_consumer_inbox_pruned_rows_total counter$/m);
    expect(metrics).toMatch(/^nerve_consumer_inbox_pruned_rows_total\{consumer="catalog"\} 2$/m);
    expect(metrics).toMatch(/^nerve_consumer_inbox_pruned_rows_total\{consumer="notifications"\} 1$/m);
    expect(metrics).not.toMatch(/^nerve_consumer_inbox_pruned_rows_total\{consumer="access-grants"\}/m);
    expect(metrics).toMatch(/^nerve_consumer_inbox_prune_passes_total 1$/m);
    expect(metrics).toMatch(/^nerve_consumer_inbox_prune_last_pass_seconds [\d.e-]+$/m);
  });

  it("ends a pass in progress after its slice when the service stops", async () => {
    t = await startTestNerve();
    // The first consumer a pass looks at.
    expect(t.nerve.inboxPrune!.consumers[0]).toBe("notifications");
    const params = Array.from({ length: 2_000 }, (_, i) => ["notifications", v7({ msecs: Date.now() - 30 * DAY + i }), "x"]).flat();
    for (let i = 0; i < params.length; i += 1_500) {
      const part = params.slice(i, i + 1_500);
      await t.nerve.db.execute(`insert into consumer_inbox (consumer, event_id, handled_on) values ${Array(part.length / 3).fill("(?, ?, ?)").join(", ")}`, part, "run");
    }
    const pass = t.nerve.inboxPrune!.run();
    await t.nerve.stop();
    expect(await pass).toMatchObject({ deleted: { notifications: 500 }, slices: 1 });
    const db = await openDatabase({ url: `sqlite:${t.dbPath}` });
    try {
      expect(await db.execute("select count(*) as n from consumer_inbox where consumer = ?", ["notifications"], "get")).toEqual({ n: 1_500 });
    } finally {
      await db.close();
    }
  });

  it("keeps every row with NERVE_INBOX_RETENTION_DAYS=off", async () => {
    t = await startTestNerve({ NERVE_INBOX_RETENTION_DAYS: "off" });
    expect(t.nerve.inboxPrune).toBeUndefined();
    const metrics = await (await fetch(`http://127.0.0.1:${t.nerve.gateway.port}/metrics`)).text();
    expect(metrics).toMatch(/^nerve_actors_live /m);
    expect(metrics).not.toMatch(/nerve_consumer_inbox_prune/);
  });
});
