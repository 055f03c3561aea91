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

/** Waits until the gateway has read EVENTS_ACCESS up to its last event. */
async function readAll(): Promise<void> {
  const last = (await (await jetstreamManager(t.client)).streams.info("EVENTS_ACCESS")).state.last_seq;
  while (gw.log.head < last) await sleep(10);
}

describe("push latency", () => {
  it("observes the events pushed live, not those a resume replays", async () => {
    await grant(t.client, "ada", "algebra");
    await readAll(); // the welcome's cursor is then past the grant
    const first = await TestClient.ready(gw.port, "ada");
    const cursor = first.cursor!;
    await first.close();

    // Missed while away: stored before the client comes back.
    await progress(t.client, "ada", "algebra", 10);
    await readAll();
    const [pushedBefore, replayedBefore] = [await pushed(), await replayed()];

    const again = await TestClient.ready(gw.port, "ada", (c) => c.events.length >= 1, cursor);
    expect(again.events.map((f) => f.event.payload.progress)).toEqual([10]);
    expect(await pushed()).toBe(pushedBefore);
    const replayedNow = await replayed();
    expect(replayedNow).toBeGreaterThan(replayedBefore); // by one, or more if uWS dropped a socket it was written to

    // Live again: observed.
    await progress(t.client, "ada", "algebra", 20);
    await again.eventCount(2);
    expect(await pushed()).toBe(pushedBefore + 1);
    expect(await replayed()).toBe(replayedNow);
    await again.close();
  });
});
