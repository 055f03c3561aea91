import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { isNerveError } from "../../contracts/index.js";
import { command, startTestNerve, type TestNerve } from "../support/index.js";

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
});
afterAll(async () => {
  await t?.close();
});

describe("orderly shutdown", () => {
  it("answers what it took, flushes the outbox to JetStream, then refuses new commands", async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => command(t.client, "users", "RegisterUser", `s${i}`, { email: `s${i}@example.com`, name: "S" })));
    // Commands in flight when the stop begins are answered; the outbox is empty once stop resolves.
    const late = Array.from({ length: 20 }, (_, i) => t.nerve.bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: `s${i}`, body: { profile_data: { bio: "late" } } }));
    const nerve = t.nerve;
    await nerve.stop();
    const settled = await Promise.allSettled(late);
    expect(settled.every((s) => s.status === "fulfilled")).toBe(true);
    const jsm = await jetstreamManager(t.client);
    expect((await jsm.streams.info("EVENTS_USERS")).state.messages).toBe(70);
    const refused = await nerve.bus.execute({ context: "users", type: "UpdateUserProfile", aggregateId: "s1", body: { profile_data: { bio: "after" } } }).catch((e) => e);
    expect(isNerveError(refused, "unavailable")).toBe(true);
    await t.restartNerve();
  });
});

describe("a shutdown step that fails", () => {
  it("is logged and the steps after it still run: NATS is drained and stop() says which step failed", async () => {
    const s = await startTestNerve();
    try {
      expect((await command(s.client, "users", "RegisterUser", "sd-fail", { email: "sd-fail@example.com", name: "S" })).body.ok).toBe(true);
      // The database gone under the service (a failover, a disk): the outbox's last count fails.
      await s.nerve.db.close();
      await expect(s.nerve.stop()).rejects.toThrow(/these shutdown steps failed: .*outbox/);
      // Before, the first failure skipped every step after it: NATS was never drained.
      expect(s.nerve.nc.isClosed()).toBe(true);
    } finally {
      await s.close().catch(() => undefined);
    }
  }, 60_000);
});

describe("a commit the storage refuses", () => {
  it("is answered unavailable (retry), even when reloading the actor fails too — not internal", async () => {
    // Commits on the main connection (NERVE_SQLITE_WRITER=main), so that closing it fails the commit and the reload.
    const s = await startTestNerve({ NERVE_SQLITE_WRITER: "main" });
    try {
      expect((await command(s.client, "users", "RegisterUser", "sd-reload", { email: "sd-reload@example.com", name: "R" })).body.ok).toBe(true);
      await s.nerve.db.close();
      const r = await command(s.client, "users", "UpdateUserProfile", "sd-reload", { profile_data: { display_name: "Again" } });
      expect(r.body.ok).toBe(false);
      expect(r.body.error.code).toBe("unavailable");
    } finally {
      await s.close().catch(() => undefined);
    }
  }, 60_000);
});
