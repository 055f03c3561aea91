/**
 * A full database (SQLITE_FULL: here `max_page_count` reached, as a full disk) refuses every command's
 * commit with `unavailable`, and says so in one line a minute, not an error line with its stack per
 * command (1,000 a second at that rate, written to the same full disk); the commands go through again
 * once there is room. Real SQLite file, the group commit on the main connection (NERVE_SQLITE_WRITER=main,
 * where the test can set the pragma), real nats-server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { captureLog, command, startTestNerve, type CapturedLog, type TestNerve } from "../support/index.js";

let t: TestNerve;
let log: CapturedLog;
beforeAll(async () => {
  log = captureLog("info");
  t = await startTestNerve({ NERVE_SQLITE_WRITER: "main" }, { logger: log.logger });
});
afterAll(async () => {
  await t?.close();
});

describe("a full database", () => {
  it("answers unavailable, logs the spell once with its count, and commits again once there is room", async () => {
    expect((await command(t.client, "users", "RegisterUser", "full-1", { email: "full-1@example.com", name: "F" })).body.ok).toBe(true);
    const { page_count: pages } = (await t.nerve.db.execute("pragma page_count", [], "get")) as { page_count: number };
    await t.nerve.db.execute(`pragma max_page_count = ${Number(pages)}`, [], "run");
    const from = log.lines.length;
    const bio = (i: number) => `${i}-`.padEnd(2000, "x");
    // The pages free in the file first: until the first refusal.
    let version = 1;
    for (let i = 0; i < 500; i++) {
      const r = await command(t.client, "users", "UpdateUserProfile", "full-1", { profile_data: { bio: bio(i) } });
      if (!r.body.ok) break;
      version = r.body.aggregate_version;
    }
    for (let i = 0; i < 20; i++) {
      const r = await command(t.client, "users", "UpdateUserProfile", "full-1", { profile_data: { bio: bio(1000 + i) } });
      expect(r.body.ok, JSON.stringify(r.body)).toBe(false);
      expect(r.body.error.code).toBe("unavailable");
    }
    const lines = log.lines.slice(from).filter((l) => String(l.msg).startsWith("commit failed"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, unavailable_so_far: 1 });
    expect(log.errors().slice(0)).toEqual([]);
    await t.nerve.db.execute("pragma max_page_count = 1073741823", [], "run");
    const ok = await command(t.client, "users", "UpdateUserProfile", "full-1", { profile_data: { bio: "room again" } });
    expect(ok.body).toMatchObject({ ok: true, aggregate_version: version + 1 });
  });
});
