/**
 * One outbox row JetStream keeps refusing: /metrics shows how long it has waited
 * (nerve_outbox_oldest_pending_age_seconds, what NerveOutboxStuck reads) and counts the relay's failed
 * publishes (nerve_outbox_publish_failures_total); `nerve status` reads the same age.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJson } from "../../contracts/index.js";
import { AdminSubjects } from "../../src/api/admin-subjects.js";
import { command, startTestNerve, until, type TestNerve } from "../support/index.js";

let t: TestNerve;
beforeAll(async () => {
  // Its shutdown would wait for the refused row as long as NERVE_SHUTDOWN_MS allows.
  t = await startTestNerve({ NERVE_SHUTDOWN_MS: "2000" });
});
afterAll(async () => {
  await t?.close();
});

/** The value of an unlabelled series in a fresh scrape of /metrics; undefined when it is absent. */
async function scraped(name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${t.nerve.gateway.port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

describe("an outbox row JetStream refuses", () => {
  it("shows its age and the failed publishes on /metrics, and the same age in nerve status", async () => {
    expect(await scraped("nerve_outbox_oldest_pending_age_seconds")).toBe(0);
    expect(await scraped("nerve_outbox_publish_failures_total")).toBe(0);
    expect(await scraped("nerve_outbox_gaps_total")).toBe(0);

    // No stream takes events.users.> any more: each publish of the user's event is refused (no responders).
    await (await jetstreamManager(t.client)).streams.delete("EVENTS_USERS");
    expect((await command(t.client, "users", "RegisterUser", "u-stuck", { email: "stuck@example.com", name: "Stuck" })).body.ok).toBe(true);
    await until("the relay's publish failed", async () => ((await scraped("nerve_outbox_publish_failures_total")) ?? 0) >= 1, 15_000, 200);

    // The event happened ten minutes ago (its time is the age's start), not waited for here.
    const [row] = await t.nerve.db.execute<{ event_id: string }[]>("select event_id from nerve_outbox", [], "all");
    expect(row).toBeDefined();
    await t.nerve.db.execute("update nerve_events set occurred_on = ? where event_id = ?", [new Date(Date.now() - 600_000).toISOString(), row!.event_id], "run");

    await until("a scrape after the update", async () => ((await scraped("nerve_outbox_oldest_pending_age_seconds")) ?? 0) >= 600, 5_000, 200);
    expect(await scraped("nerve_outbox_oldest_pending_age_seconds")).toBeLessThan(660);
    expect(await scraped("nerve_outbox_pending")).toBe(1);

    const decoded = decodeJson((await t.client.request(AdminSubjects.Status, new Uint8Array(), { timeout: 5_000 })).data);
    const reply = (decoded.ok ? decoded.value : decoded.error) as { ok: boolean; result: { outbox: { pending: number; oldest_age_ms: number }; relay: unknown } };
    expect(reply.ok).toBe(true);
    // The relay holds that stream's events back (the other streams' go out), and says so.
    expect(reply.result.relay).toEqual({ held_streams: ["EVENTS_USERS"], held_aggregates: 0 });
    expect(await scraped("nerve_outbox_held_streams")).toBe(1);
    const outbox = reply.result.outbox;
    expect(outbox.pending).toBe(1);
    expect(outbox.oldest_age_ms).toBeGreaterThanOrEqual(600_000);
    expect(outbox.oldest_age_ms).toBeLessThan(660_000);
  });
});
