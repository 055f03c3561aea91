import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNerve, until, type TestNerve } from "../support/index.js";
import { EventForge, TestClient, sleep, startTestGateway } from "./support.js";

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
});
afterAll(async () => {
  await t?.close();
});

const metric = async (port: number, pattern: RegExp) => Number(pattern.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? 0);

describe("slow and dead clients", () => {
  it("closes a client that stops reading with 4408 and its last cursor, while others keep flowing", async () => {
    const gw = await startTestGateway(t.nats.url, { maxBufferedBytes: 64 * 1024, slowAfterMs: 500 });
    try {
      const forge = new EventForge(t.client);
      await forge.publish("CourseAccessGranted", "slow", "sloth", { expires_at: null });
      await forge.publish("CourseAccessGranted", "fast", "falcon", { expires_at: null });
      const slow = await TestClient.as(gw.port, "slow");
      const slowTab = await TestClient.as(gw.port, "slow"); // the same learner on a device that reads
      const fast = await TestClient.as(gw.port, "fast");
      await Promise.all([slow.welcome(), slowTab.welcome(), fast.welcome()]);
      // The welcome's cursor: every event after it comes with a later one.
      const base = slow.cursor!;
      expect(base).toMatch(/^s[0-9a-z]+$/);
      (slow.ws as any)._socket.pause(); // stops reading: the kernel buffers fill, then uWS's

      const seqs: number[] = [];
      let fastSent = 0;
      const slowClosed = () => metric(gw.port, /nerve_gateway_closes_total\{reason="slow"\} (\d+)/);
      while ((await slowClosed()) === 0) {
        if (seqs.length > 60_000) throw new Error("the slow client was never closed");
        seqs.push(...(await forge.progressBurst("slow", "sloth", 2000)));
        await forge.publish("ProgressUpdated", "fast", "falcon", { progress: ++fastSent });
        // Others keep flowing while the slow socket is stuck.
        await fast.until((c) => c.events.length === fastSent, 5_000, `fast event ${fastSent}`);
      }
      await slowTab.eventCount(seqs.length, 20_000);
      expect(slowTab.closed).toBeUndefined();
      expect(fast.closed).toBeUndefined();

      (slow.ws as any)._socket.resume();
      const closed = await slow.closedWith(20_000);
      expect(closed.code).toBe(4408);
      expect(closed.reason).toBe(slow.cursor); // the last cursor it received: nothing skipped silently
      const got = slow.events.length;
      expect(got).toBeGreaterThan(0);
      expect(got).toBeLessThan(seqs.length);
      expect(slow.events.map((f) => f.cursor)).toEqual(seqs.slice(0, got).map((s) => `s${s.toString(36)}`));

      // Resuming from the close reason delivers exactly the rest.
      const again = await TestClient.as(gw.port, "slow", closed.reason);
      await again.eventCount(seqs.length - got, 20_000);
      await sleep(100);
      expect(again.frames.every((f) => f.type === "event")).toBe(true);
      expect(again.events.map((f) => f.cursor)).toEqual(seqs.slice(got).map((s) => `s${s.toString(36)}`));
      expect(seqs[0]).toBeGreaterThan(parseInt(base.slice(1), 36));
      await Promise.all([again.close(), slowTab.close(), fast.close()]);
    } finally {
      await gw.close();
    }
  });

  it("keeps a client that stops reading for a moment while far more than the budget is pushed: everything arrives once it reads", async () => {
    const gw = await startTestGateway(t.nats.url, { maxBufferedBytes: 16 * 1024, slowAfterMs: 5_000 });
    try {
      const forge = new EventForge(t.client);
      await forge.publish("CourseAccessGranted", "pause", "panda", { expires_at: null });
      const c = await TestClient.ready(gw.port, "pause");
      (c.ws as any)._socket.pause(); // a moment without reading (a slow network's first window, a busy phone)
      const seqs: number[] = [];
      const full = () => metric(gw.port, /nerve_gateway_full_sockets (\d+)/);
      const slowClosed = () => metric(gw.port, /nerve_gateway_closes_total\{reason="slow"\} (\d+)/);
      // Until uWS holds more than the budget for it (the kernel's buffers are full too).
      while ((await full()) === 0 && (await slowClosed()) === 0) {
        if (seqs.length > 60_000) throw new Error("the socket never filled");
        seqs.push(...(await forge.progressBurst("pause", "panda", 2000)));
      }
      // More arrive while it is full: held for it, not written.
      seqs.push(...(await forge.progressBurst("pause", "panda", 500)));
      await sleep(300);
      (c.ws as any)._socket.resume();
      // The grant came in the welcome; every progress event after it, in order, none twice.
      await c.eventCount(seqs.length, 30_000);
      expect(c.events.map((f) => f.cursor)).toEqual(seqs.map((s) => `s${s.toString(36)}`));
      expect(c.closed).toBeUndefined();
      expect(await slowClosed()).toBe(0);
      await until("no socket full", async () => (await full()) === 0);
      await c.close();
    } finally {
      await gw.close();
    }
  }, 60_000);

  it("closes a client that sends frames without reading with 4408 once its unwritten acks pass the budget, long before the slow rule would", async () => {
    const gw = await startTestGateway(t.nats.url, { maxBufferedBytes: 16 * 1024, slowAfterMs: 120_000 });
    try {
      const c = await TestClient.ready(gw.port, "flood");
      (c.ws as any)._socket.pause(); // reads nothing more, while it sends
      const slowClosed = () => metric(gw.port, /nerve_gateway_closes_total\{reason="slow"\} (\d+)/);
      let sent = 0;
      // Each tiny frame gets an ack of about 100 bytes, in bursts the hub writes between them: the kernel's
      // buffers fill, then what uWS holds passes the budget, then the acks queued behind it pass it too.
      while (gw.connections() > 0) {
        if (sent >= 600_000) throw new Error(`still open after ${sent} frames`);
        for (let i = 0; i < 100; i++) c.send("x");
        sent += 100;
        await sleep(1);
      }
      expect(await slowClosed()).toBe(1);
      (c.ws as any)._socket.resume();
      const closed = await c.closedWith(20_000);
      expect(closed.code).toBe(4408);
      expect(c.frames[0]!.type).toBe("welcome");
      // Every ack it got was for one of its frames, in order: a prefix of them, the rest never made.
      const acks = c.frames.slice(1);
      expect(acks.every((f) => f.type === "ack" && f.error?.code === "invalid_request")).toBe(true);
      expect(acks.length).toBeLessThan(sent);
    } finally {
      await gw.close();
    }
  }, 60_000);

  it("coalesces a burst of frames for one socket into few writes", async () => {
    const gw = await startTestGateway(t.nats.url, { flushMs: 50 });
    try {
      const forge = new EventForge(t.client);
      const c = await TestClient.ready(gw.port, "burst");
      let chunks = 0;
      (c.ws as any)._socket.on("data", () => chunks++);
      await forge.progressBurst("burst", "b", 20, 20);
      await c.eventCount(20);
      expect(chunks).toBeLessThanOrEqual(3);
      await c.close();
    } finally {
      await gw.close();
    }
  });

  it("pings idle clients and drops a dead one", async () => {
    const gw = await startTestGateway(t.nats.url, { heartbeatSeconds: 8 });
    try {
      const alive = await TestClient.as(gw.port, "alive");
      const dead = await TestClient.as(gw.port, "dead");
      await Promise.all([alive.welcome(), dead.welcome()]);
      let pings = 0;
      alive.ws.on("ping", () => pings++);
      (dead.ws as any)._socket.pause(); // answers nothing, not even pings
      const until = Date.now() + 25_000;
      while (gw.connections() > 1 && Date.now() < until) await sleep(250);
      expect(gw.connections()).toBe(1);
      expect(pings).toBeGreaterThan(0);
      expect(alive.closed).toBeUndefined();
      await alive.close();
      dead.ws.terminate();
    } finally {
      await gw.close();
    }
  }, 40_000);
});
