/**
 * One bound on the requests an instance holds at once, over all aggregates (resource-exhaustion audit):
 * before, each actor's mailbox was bounded but not their sum, so a flood sent faster than commits go (an
 * open loop of valid commands whose clients gave up) kept every request in memory until the heap ran out
 * and the process died with all of them. Now a request past NERVE_MAX_IN_HAND requests, or past
 * NERVE_MAX_IN_HAND_BYTES of bodies, is answered `unavailable` at once; every request answered ok is
 * committed, none is lost. Real nats-server, real SQLite file.
 */
import { afterEach, describe, expect, it } from "vitest";
import { command, startTestNerve, until, type TestNerve } from "../support/index.js";

let t: TestNerve | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function burst(n: number, bio: (i: number) => string) {
  const replies = await Promise.all(Array.from({ length: n }, (_, i) => command(t!.client, "users", "UpdateUserProfile", "flood-1", { profile_data: { bio: bio(i) } }, { timeout: 30_000 })));
  const ok = replies.filter((r) => r.body.ok);
  const refused = replies.filter((r) => !r.body.ok);
  return { ok, refused };
}

describe("requests in hand", () => {
  it("answers requests past NERVE_MAX_IN_HAND unavailable at once, and commits every one it answered ok", async () => {
    t = await startTestNerve({ NERVE_MAX_IN_HAND: "40", NERVE_MAILBOX_SIZE: "4096" });
    expect((await command(t.client, "users", "RegisterUser", "flood-1", { email: "flood-1@example.com", name: "F" })).body.ok).toBe(true);
    const { ok, refused } = await burst(600, (i) => `bio ${i}`);
    expect(refused.length).toBeGreaterThan(0);
    expect(ok.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.body.error).toMatchObject({ code: "unavailable", message: expect.stringContaining("its most requests in hand (40 requests") });
    // Every ok is a committed version; nothing else was.
    const history = await t.nerve.bus.repo.history("User", "flood-1");
    expect(history).toHaveLength(1 + ok.length);
    expect(new Set(ok.map((r) => r.body.aggregate_version)).size).toBe(ok.length);
    await until("nothing in hand", () => t!.nerve.api!.stats.inHand.requests === 0);
    expect(t.nerve.api!.stats.overloaded).toBe(refused.length);
    const metrics = await (await fetch(`http://127.0.0.1:${t.nerve.gateway.port}/metrics`)).text();
    expect(metrics).toContain(`nerve_requests_overloaded_total ${refused.length}`);
    expect(metrics).toMatch(/nerve_requests_in_hand 0/);
  });

  it("answers requests past NERVE_MAX_IN_HAND_BYTES of bodies unavailable at once", async () => {
    t = await startTestNerve({ NERVE_MAX_IN_HAND_BYTES: String(1024 * 1024), NERVE_MAILBOX_SIZE: "4096" });
    expect((await command(t.client, "users", "RegisterUser", "flood-1", { email: "flood-1@example.com", name: "F" })).body.ok).toBe(true);
    // ~2 KiB each: 1,500 of them are ~3 MiB at once.
    const { ok, refused } = await burst(1500, (i) => `${i}-`.padEnd(1990, "b"));
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.body.error).toMatchObject({ code: "unavailable", message: expect.stringContaining("1048576 bytes") });
    expect(await t.nerve.bus.repo.history("User", "flood-1")).toHaveLength(1 + ok.length);
  });
});
