import { describe, expect, it } from "vitest";
import type { TestNerve } from "../support/index.js";
import { EventForge, TestClient, grant, progress, sleep, startTestGateway, useNerveAndGateway, type TestGateway } from "./support.js";

let t: TestNerve;
let gw: TestGateway;
useNerveAndGateway((started) => ({ t, gw } = started));

/** Waits until a gateway has read the stream up to `seq`. */
async function readUpTo(g: TestGateway, seq: number): Promise<void> {
  const until = Date.now() + 10_000;
  while (g.log.head < seq) {
    if (Date.now() > until) throw new Error(`gateway stuck at ${g.log.head} < ${seq}`);
    await sleep(10);
  }
}

const streamLast = async () => (await (await import("@nats-io/jetstream")).jetstreamManager(t.client)).streams.info("EVENTS_ACCESS").then((i) => i.state.last_seq);

describe("resume", () => {
  it("after 3 missed updates delivers exactly those 3, then live ones, with no welcome", async () => {
    await grant(t.client, "ada", "algebra");
    const first = await TestClient.as(gw.port, "ada");
    await first.until((c) => c.cursor !== undefined && (c.events.length === 1 || c.frames[0]!.progress!.length === 1));
    await readUpTo(gw, await streamLast());
    const cursor = first.cursor!;
    await first.close();

    for (const p of [10, 20, 30]) await progress(t.client, "ada", "algebra", p);
    await readUpTo(gw, await streamLast());
    const again = await TestClient.as(gw.port, "ada", cursor);
    await again.eventCount(3);
    await sleep(150);
    expect(again.frames.map((f) => f.type)).toEqual(["event", "event", "event"]);
    expect(again.events.map((f) => f.event.payload.progress)).toEqual([10, 20, 30]);

    await progress(t.client, "ada", "algebra", 40);
    await again.eventCount(4);
    await sleep(150);
    expect(again.events.map((f) => f.event.payload.progress)).toEqual([10, 20, 30, 40]);
    await again.close();
  });

  it("works with a cursor from another instance and after a gateway restart", async () => {
    await grant(t.client, "bob", "biology");
    await progress(t.client, "bob", "biology", 5);
    const a = await TestClient.as(gw.port, "bob");
    await readUpTo(gw, await streamLast());
    await a.welcome();
    const cursor = a.cursor!;
    await a.close();

    await gw.close(); // the instance that issued the cursor is gone
    for (const p of [15, 25, 35]) await progress(t.client, "bob", "biology", p);
    gw = await startTestGateway(t.nats.url);
    const other = await startTestGateway(t.nats.url);
    try {
      const viaRestarted = await TestClient.as(gw.port, "bob", cursor);
      const viaOther = await TestClient.as(other.port, "bob", cursor);
      for (const c of [viaRestarted, viaOther]) {
        await c.eventCount(3);
        await sleep(100);
        expect(c.frames.map((f) => f.type)).toEqual(["event", "event", "event"]);
        expect(c.events.map((f) => f.event.payload.progress)).toEqual([15, 25, 35]);
      }
      // Both instances push the same live events with the same cursors.
      await progress(t.client, "bob", "biology", 45);
      await Promise.all([viaRestarted.eventCount(4), viaOther.eventCount(4)]);
      expect(viaOther.events.map((f) => f.cursor)).toEqual(viaRestarted.events.map((f) => f.cursor));
      await Promise.all([viaRestarted.close(), viaOther.close()]);
    } finally {
      await other.close();
    }
  });

  it("answers reset and a fresh welcome for a malformed cursor or one beyond the stream's end", async () => {
    for (const cursor of ["garbage", "s" + (1e9).toString(36)]) {
      const c = await TestClient.ready(gw.port, "carol", undefined, cursor);
      expect(c.frames.map((f) => f.type)).toEqual(["reset", "welcome"]);
      await c.close();
    }
  });

  it("keeps at least the last 1,000 events of a learner, and resets beyond them", async () => {
    const g = await startTestGateway(t.nats.url, { retention: { minAgeMs: 0, minEvents: 1000 } });
    try {
      const forge = new EventForge(t.client);
      const seqs: number[] = [];
      seqs.push(await forge.publish("CourseAccessGranted", "dave", "drawing", { expires_at: null }));
      for (let p = 1; p <= 1100; p++) seqs.push(await forge.publish("ProgressUpdated", "dave", "drawing", { progress: Math.min(100, Math.ceil(p / 11)) }));
      await readUpTo(g, seqs.at(-1)!);
      // 1,101 events: a cursor 1,000 events back is served exactly…
      const ok = await TestClient.as(g.port, "dave", `s${seqs.at(-1001)!.toString(36)}`);
      await ok.eventCount(1000);
      await sleep(150);
      expect(ok.frames.every((f) => f.type === "event")).toBe(true);
      expect(ok.events.map((f) => f.cursor)).toEqual(seqs.slice(-1000).map((s) => `s${s.toString(36)}`));
      // …one further back is not.
      const old = await TestClient.as(g.port, "dave", `s${seqs.at(-1002)!.toString(36)}`);
      await old.welcome();
      expect(old.frames.map((f) => f.type)).toEqual(["reset", "welcome"]);
      expect(old.frames[1]!.progress![0]).toMatchObject({ course_id: "drawing", progress: 100, version: 1101 });
      await Promise.all([ok.close(), old.close()]);
    } finally {
      await g.close();
    }
  });

  it("replays only its window on start: older cursors get reset", async () => {
    const forge = new EventForge(t.client);
    const before = await forge.publish("CourseAccessGranted", "erin", "economics", { expires_at: null });
    await sleep(1500);
    const inWindow = await forge.publish("ProgressUpdated", "erin", "economics", { progress: 50 });
    const g = await startTestGateway(t.nats.url, { replayMs: 1000 });
    try {
      expect(g.log.floor).toBe(inWindow);
      const served = await TestClient.as(g.port, "erin", `s${before.toString(36)}`);
      await served.eventCount(1);
      expect(served.events[0]!.event.payload.progress).toBe(50);
      const tooOld = await TestClient.as(g.port, "erin", `s${(before - 1).toString(36)}`);
      await tooOld.welcome();
      expect(tooOld.frames.map((f) => f.type)).toEqual(["reset", "welcome"]);
      await Promise.all([served.close(), tooOld.close()]);
    } finally {
      await g.close();
    }
  });
});
