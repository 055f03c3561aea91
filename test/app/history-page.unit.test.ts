/**
 * History's reads over a stand-in event log: without pages, more than HISTORY_PAGE.maxUnpaged events are
 * refused from their count, no row read; a page is the one the rows read whole made (at most `limit` events
 * and HISTORY_PAGE.maxBytes of their JSON, one at least), having read one row beyond it at most.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HISTORY_PAGE } from "../../contracts/index.js";
import { history } from "../../src/app/history.js";
import type { EventRow, Repository } from "../../src/persistence/index.js";
import { withinBytes, type ReplyRoom } from "../../src/support/byte-budget.js";

const row = (v: number, bytes: number): EventRow =>
  ({
    seq: v,
    event_id: `e${v}`,
    event_type: "UserProfileUpdated",
    event_version: 1,
    occurred_on: "2026-12-05T00:00:00.000Z",
    aggregate_type: "User",
    aggregate_id: "u1",
    aggregate_version: v,
    correlation_id: "c",
    causation_id: null,
    payload: JSON.stringify({ bio: "b".repeat(bytes) }),
  }) as EventRow;

/** A repository over `rows` (versions 1…n) that counts what it is asked and the rows it hands out. */
function repoOf(rows: EventRow[]) {
  const seen = { counts: 0, rows: 0 };
  const after = (v: number) => rows.filter((r) => r.aggregate_version > v);
  const repo = {
    historyLength: async (_t: string, _id: string, atMost: number) => (seen.counts++, Math.min(rows.length, atMost)),
    historySizes: async (_t: string, _id: string, v: number, limit: number) =>
      after(v)
        .slice(0, limit)
        .map((r) => ({ version: r.aggregate_version, bytes: [r.payload, r.event_id, r.event_type, r.occurred_on, r.aggregate_type, r.aggregate_id, r.correlation_id].join("").length })),
    history: async (_t: string, _id: string, range: { after?: number; limit?: number }) => {
      const out = after(range.after ?? 0).slice(0, range.limit);
      seen.rows += out.length;
      return out;
    },
  };
  return { repo: repo as unknown as Repository, seen };
}

/** The row as History answers it (no upcast for this event type). */
const envelope = (r: EventRow) => {
  const { seq: _seq, payload, ...rest } = r;
  return { ...rest, payload: JSON.parse(payload) as unknown };
};

const json = (v: unknown) => Buffer.byteLength(JSON.stringify(v));
const room: ReplyRoom = { resultBytes: 1024 * 1024, bytesOf: json, tooLarge: () => new Error("too large") as never };
const user = { aggregate_type: "User", aggregate_id: "u1" } as const;

describe("History without pages", () => {
  it("answers up to maxUnpaged events whole, and refuses one more from the count, reading no row", async () => {
    const fits = repoOf(Array.from({ length: HISTORY_PAGE.maxUnpaged }, (_, i) => row(i + 1, 1)));
    const all = await history(fits.repo)(user, { ...room, resultBytes: 10 * 1024 * 1024 });
    expect(all.events).toHaveLength(HISTORY_PAGE.maxUnpaged);
    expect(all).not.toHaveProperty("next_after_version");
    const over = repoOf(Array.from({ length: HISTORY_PAGE.maxUnpaged + 1 }, (_, i) => row(i + 1, 1)));
    await expect(history(over.repo)(user, room)).rejects.toMatchObject({
      code: "invalid_request",
      message: `the history of User u1 holds more than ${HISTORY_PAGE.maxUnpaged} events: ask for it in pages (after_version, limit; each answer's next_after_version is where the next begins)`,
    });
    expect(over.seen.rows).toBe(0);
  });

  it("stops reading once the events pass the reply's room, one event beyond it", async () => {
    const big = repoOf(Array.from({ length: 200 }, (_, i) => row(i + 1, 10_000)));
    let refused = 0;
    await expect(history(big.repo)(user, { ...room, resultBytes: 100_000, tooLarge: (n) => ((refused = n), new Error("too large") as never) })).rejects.toThrow("too large");
    expect(big.seen.rows).toBe(10);
    expect(refused).toBeGreaterThan(100_000);
  });
});

describe("A page of History", () => {
  it("is the page the rows read whole made, read with one row more at most", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.nat({ max: 300 }), fc.nat({ max: 300_000 })), { maxLength: 60 }),
        fc.nat({ max: 70 }),
        fc.option(fc.integer({ min: 1, max: HISTORY_PAGE.maxLimit }), { nil: undefined }),
        async (sizes, after, limit) => {
          const rows = sizes.map((s, i) => row(i + 1, s));
          const { repo, seen } = repoOf(rows);
          const page = await history(repo)({ ...user, after_version: after, ...(limit === undefined ? {} : { limit }) }, room);
          // As it was: limit + 1 rows read, the page cut to HISTORY_PAGE.maxBytes of JSON.
          const old = rows.slice(after, after + (limit ?? HISTORY_PAGE.defaultLimit) + 1);
          const expected = withinBytes(old.slice(0, limit ?? HISTORY_PAGE.defaultLimit).map(envelope), HISTORY_PAGE.maxBytes);
          expect(page.events.map((e) => e.aggregate_version)).toEqual(expected.map((r) => r.aggregate_version));
          expect(page.next_after_version).toBe(expected.length < old.length ? expected.at(-1)!.aggregate_version : null);
          expect(seen.rows).toBeLessThanOrEqual(expected.length + 1);
        },
      ),
      { numRuns: 200 },
    );
  });
});
