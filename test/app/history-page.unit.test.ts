/** History's bound without pages: more than HISTORY_PAGE.maxUnpaged events are refused, naming the pages, before any is decoded. */
import { describe, expect, it } from "vitest";
import { HISTORY_PAGE } from "../../contracts/index.js";
import { aggregateQueries } from "../../src/app/queries.js";
import type { CommandBus } from "../../src/runtime/index.js";

function busWith(events: number): { bus: CommandBus; asked: unknown[] } {
  const asked: unknown[] = [];
  const row = (v: number) => ({ event_id: `e${v}`, event_type: "UserProfileUpdated", event_version: 1, occurred_on: "2026-12-05T00:00:00.000Z", aggregate_type: "User", aggregate_id: "u1", aggregate_version: v, correlation_id: "c", causation_id: null, payload: "{}" });
  const repo = {
    history: async (_t: string, _id: string, range: { after?: number; limit?: number } = {}) => {
      asked.push(range);
      const from = (range.after ?? 0) + 1;
      return Array.from({ length: Math.max(0, Math.min(events - from + 1, range.limit ?? Infinity)) }, (_, i) => row(from + i));
    },
  };
  return { bus: { repo, moduleOf: () => undefined } as unknown as CommandBus, asked };
}

describe("History without pages", () => {
  it("answers up to maxUnpaged events whole, and refuses one more, reading no more than that", async () => {
    const fits = busWith(HISTORY_PAGE.maxUnpaged);
    const all = (await aggregateQueries(fits.bus).History!({ aggregate_type: "User", aggregate_id: "u1" })) as { events: unknown[] };
    expect(all.events).toHaveLength(HISTORY_PAGE.maxUnpaged);
    expect(all).not.toHaveProperty("next_after_version");
    const over = busWith(HISTORY_PAGE.maxUnpaged + 1);
    await expect(aggregateQueries(over.bus).History!({ aggregate_type: "User", aggregate_id: "u1" })).rejects.toMatchObject({
      code: "invalid_request",
      message: `the history of User u1 holds more than ${HISTORY_PAGE.maxUnpaged} events: ask for it in pages (after_version, limit; each answer's next_after_version is where the next begins)`,
    });
    expect(over.asked).toEqual([{ limit: HISTORY_PAGE.maxUnpaged + 1 }]);
  });
});
