/** Following a replay's progress (src/consumers/replay-progress.ts) when a read of its durables fails for a moment. */
import { describe, expect, it } from "vitest";
import { followReplay, type ConsumerRunner, type ReplayProgress } from "../../src/consumers/index.js";

/** A runner's durables as the follower reads them: `reads` in turn, an Error thrown. */
function durables(reads: (Error | { ackFloor: number; pending: number })[]): ConsumerRunner {
  let i = 0;
  return {
    name: "notifications",
    ackFloors: async () => {
      const r = reads[Math.min(i++, reads.length - 1)]!;
      if (r instanceof Error) throw r;
      return [{ stream: "EVENTS_USERS", filter: "events.users.>", ackFloor: r.ackFloor, pending: r.pending, ackPending: 0 }];
    },
  } as unknown as ConsumerRunner;
}

const end = { total: 100, lastSeq: new Map([["EVENTS_USERS events.users.>", 100]]) };

describe("followReplay", () => {
  it("given a read of the durables that fails for a moment (NATS restarting), reads again and reports the replay done (was: failed with 'timeout' while it went on to the end)", async () => {
    const seen: ReplayProgress[] = [];
    const timeout = Object.assign(new Error("TIMEOUT"), { name: "TimeoutError" });
    const p = await followReplay(durables([{ ackFloor: 20, pending: 80 }, timeout, timeout, { ackFloor: 100, pending: 0 }]), end, () => true, (x) => seen.push(x));
    expect(p).toEqual({ consumer: "notifications", done: 100, total: 100 });
    expect(seen.map((s) => s.done)).toEqual([20, 100]);
  });

  it("gives up once the reads have failed for as long as it allows, with the last failure", async () => {
    const down = new Error("connection closed");
    await expect(followReplay(durables([down]), end, () => true, () => undefined, 1200)).rejects.toThrow("connection closed");
  });

  it("stops with unavailable when the consumer left this instance while the reads fail", async () => {
    let here = true;
    const follow = followReplay(durables([new Error("connection closed")]), end, () => here, () => undefined);
    here = false;
    await expect(follow).rejects.toMatchObject({ code: "unavailable" });
  });
});
