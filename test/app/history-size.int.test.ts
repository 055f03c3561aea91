/**
 * The history of a long-lived aggregate: 2,500 profile updates of 600 bytes were 1.6 MB of History, more than
 * one NATS reply carries, and the query answered `internal: query failed`. Now the whole history is answered
 * while it fits; a longer one is refused with what to do (pages: after_version, limit, next_after_version),
 * the pages carry it all, and the CLI reads them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command, query, startTestNerve, type TestNerve } from "../support/index.js";
import { nerve } from "../cli/support.js";

let t: TestNerve;
const UPDATES = 2_500;

beforeAll(async () => {
  t = await startTestNerve();
  expect((await command(t.client, "users", "RegisterUser", "long1", { email: "long1@example.com", name: "L" })).body.ok).toBe(true);
  const bio = "b".repeat(600);
  for (let i = 0; i < UPDATES; i++) {
    const r = await command(t.client, "users", "UpdateUserProfile", "long1", { profile_data: { bio: `${bio} ${i}` } });
    if (!r.body.ok) throw new Error(JSON.stringify(r.body));
  }
  expect((await command(t.client, "users", "RegisterUser", "short1", { email: "short1@example.com", name: "S" })).body.ok).toBe(true);
}, 120_000);
afterAll(async () => {
  await t?.close();
});

const history = (body: Record<string, unknown>, json = false) => query(t.client, "audit", "History", { aggregate_type: "User", ...body }, { json, timeout: 20_000 });

describe("History of a long-lived aggregate", () => {
  it("answers a short history whole, as before (no next_after_version unless pages are asked for)", async () => {
    const r = await history({ aggregate_id: "short1" });
    expect(r.body.ok).toBe(true);
    expect(r.body.result).toEqual({ events: [expect.objectContaining({ event_type: "UserRegistered", aggregate_version: 1 })] });
  });

  it("refuses a history too large for one reply with a clear error naming the pages, in both encodings", async () => {
    for (const json of [false, true]) {
      const r = await history({ aggregate_id: "long1" }, json);
      expect(r.body.ok).toBe(false);
      expect(r.body.error.code).toBe("invalid_request");
      expect(r.body.error.message).toMatch(/^the answer to History is (\d+ bytes, )?more than one NATS message carries .*: ask for it in pages \(after_version, limit\)$/);
    }
  });

  it("answers it in pages that hold every event once, in order, each under the byte budget", async () => {
    const versions: number[] = [];
    let pages = 0;
    for (let after: number | null = 0; after !== null; pages++) {
      const r = await history({ aggregate_id: "long1", after_version: after, limit: 1_000 });
      expect(r.body.ok).toBe(true);
      const events = r.body.result.events as { aggregate_version: number }[];
      expect(events.length).toBeGreaterThan(0);
      expect(Buffer.byteLength(JSON.stringify(events))).toBeLessThanOrEqual(512 * 1024 + 2_000);
      versions.push(...events.map((e) => e.aggregate_version));
      after = r.body.result.next_after_version;
      if (after !== null) expect(after).toBe(events.at(-1)!.aggregate_version);
    }
    expect(versions).toEqual(Array.from({ length: UPDATES + 1 }, (_, i) => i + 1));
    // 1.6 MB at 512 KiB a page, at most.
    expect(pages).toBeGreaterThanOrEqual(4);
    // A limit alone, and an after_version past the end.
    expect((await history({ aggregate_id: "long1", limit: 3 })).body.result).toMatchObject({ events: [{ aggregate_version: 1 }, { aggregate_version: 2 }, { aggregate_version: 3 }], next_after_version: 3 });
    expect((await history({ aggregate_id: "long1", after_version: 99_999 })).body.result).toEqual({ events: [], next_after_version: null });
  });

  it("refuses a bad page: limit 0 or past 1,000, a negative or fractional after_version", async () => {
    for (const page of [{ limit: 0 }, { limit: 1_001 }, { after_version: -1 }, { after_version: 1.5 }, { after_version: "3" }]) {
      const r = await history({ aggregate_id: "long1", ...page });
      expect(r.body.error?.code, JSON.stringify(page)).toBe("invalid_request");
    }
  });

  it("prints it all from the CLI, a page at a time", async () => {
    const { code, out } = await nerve({ NATS_URL: t.nats.url }, "history", "users", "long1", "--json");
    expect(code).toBe(0);
    expect((JSON.parse(out) as { aggregate_version: number }[]).map((e) => e.aggregate_version)).toEqual(Array.from({ length: UPDATES + 1 }, (_, i) => i + 1));
  });
});
