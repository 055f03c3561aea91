/**
 * nerve_gateway_push_latency_seconds is the live path's: an event a resuming client missed (stored while
 * it was away) is written to it, and counted in nerve_gateway_frames_replayed_total, but not observed
 * in the push latency, whose store time would be the client's time away.
 */
import { describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import type { TestNerve } from "../support/index.js";
import { TestClient, grant, progress, sleep, useNerveAndGateway, type TestGateway } from "./support.js";

let t: TestNerve;
let gw: TestGateway;
useNerveAndGateway((started) => ({ t, gw } = started));

/** A series of the gateway's registry, read now (not /metrics' render of up to a second ago). */
async function series(metric: string, line: RegExp): Promise<number> {
  const text = await gw.metrics.registry.getSingleMetricAsString(metric);
  const m = line.exec(text);
  expect(m, text).not.toBeNull();
  return Number(m![1]);
}
const pushed = () => series("nerve_gateway_push_latency_seconds", /^nerve_gateway_push_latency_seconds_count (\d+)$/m);
const replayed = () => series("nerve_gateway_frames_replayed_total", /^nerve_gateway_frames_replayed_total (\d+)$/m);

/**
 * A socket of ada's (resuming from `cursor` when given) once `ready` holds; connected again when uWS drops
 * a fresh socket with 1006 before any frame (a known uWS issue under load: README, "closed with 1006").
 */
async function connect(cursor: string | undefined, ready: (c: TestClient) => boolean): Promise<TestClient> {
  for (let attempt = 1; ; attempt++) {
    const c = await TestClient.as(gw.port, "ada", cursor);
    await c.until((c) => ready(c) || c.closed !== undefined, 10_000, "the session's first frames");
    if (ready(c)) return c;
    if (attempt === 3 || c.closed?.code !== 1006 || c.frames.length > 0) throw new Error(`socket closed: ${JSON.stringify(c.closed)}`);
  }
}

/** Waits until the gateway has read EVENTS_ACCESS up to its last event. */
async function readAll(): Promise<void> {
  const last = (await (await jetstreamManager(t.client)).streams.info("EVENTS_ACCESS")).state.last_seq;
  while (gw.log.head < last) await sleep(10);
}

describe("push latency", () => {
  it("observes the events pushed live, not those a resume replays", async () => {
    await grant(t.client, "ada", "algebra");
    const first = await connect(undefined, (c) => c.frames.some((f) => f.type === "welcome"));
    await readAll();
    const cursor = first.cursor!;
    await first.close();

    // Missed while away: stored before the client comes back.
    await progress(t.client, "ada", "algebra", 10);
    await readAll();
    const [pushedBefore, replayedBefore] = [await pushed(), await replayed()];

    const again = await connect(cursor, (c) => c.events.length >= 1);
    expect(again.events.map((f) => f.event.payload.progress)).toEqual([10]);
    expect(await pushed()).toBe(pushedBefore);
    const replayedNow = await replayed();
    expect(replayedNow).toBeGreaterThan(replayedBefore); // by one, or more when uWS dropped a socket it was written to

    // Live again: observed.
    await progress(t.client, "ada", "algebra", 20);
    await again.eventCount(2);
    expect(await pushed()).toBe(pushedBefore + 1);
    expect(await replayed()).toBe(replayedNow);
    await again.close();
  });
});
