import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { ensureStreams } from "../../src/nats/index.js";
import { startNatsServer, type NatsServerHandle } from "../support/index.js";
import { EventForge, TestClient, sleep, startTestGateway } from "./support.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  await ensureStreams(await jetstreamManager(nc));
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

async function readyStatus(port: number): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
}

describe("a NATS outage", () => {
  it("turns /readyz to 503, keeps learners' sockets open, and delivery resumes without a gap", async () => {
    const gw = await startTestGateway(nats.url);
    const forge = new EventForge(nc);
    try {
      await forge.publish("CourseAccessGranted", "ada", "algebra", { expires_at: null });
      const ada = await TestClient.as(gw.port, "ada");
      await ada.until((c) => c.events.length === 1 || (c.frames[0]?.progress?.length ?? 0) === 1);
      expect(await readyStatus(gw.port)).toBe(200);

      await nats.kill(); // the store survives, as after a crash
      const down = Date.now() + 10_000;
      while ((await readyStatus(gw.port)) !== 503 && Date.now() < down) await sleep(100);
      expect(await readyStatus(gw.port)).toBe(503);
      await nats.restart();
      const up = Date.now() + 20_000;
      while ((await readyStatus(gw.port)) !== 200 && Date.now() < up) await sleep(200);
      expect(await readyStatus(gw.port)).toBe(200);

      const before = ada.events.length;
      for (const p of [10, 20, 30]) await forge.publish("ProgressUpdated", "ada", "algebra", { progress: p });
      await ada.eventCount(before + 3, 20_000);
      expect(ada.events.slice(-3).map((f) => f.event.payload.progress)).toEqual([10, 20, 30]);
      expect(ada.closed).toBeUndefined();
      await ada.close();
    } finally {
      await gw.close();
    }
  });
});
