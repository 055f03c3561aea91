/**
 * The start-up replay of EVENTS_ACCESS runs behind a listening port: while it runs, `/healthz` and
 * `/metrics` answer, `/readyz` says 503 (not warm, with the replay's progress) and upgrades are
 * refused with 503; once it is done, the gateway is ready and welcomes learners as before. The
 * replay is made long by events published before the gateway starts (a real nats-server, no hook).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import WebSocket from "ws";
import { deriveAccessId } from "../../contracts/index.js";
import { startGateway, type Gateway } from "../../src/gateway/index.js";
import { createLogger } from "../../src/log/index.js";
import { backgroundFailures } from "../../src/supervision/index.js";
import { accessEventMessage } from "../support/access-events.js";
import { freePort, useNatsWithStreams, type NatsWithStreams } from "../support/index.js";
import { SECRET, TestClient, sleep, token } from "./support.js";

/** Enough for a replay of one to three seconds, against the tens of milliseconds the checks during it take (a few hundred on a loaded machine). */
const EVENTS = 40_000;
const USERS = 100;

let h: NatsWithStreams;
useNatsWithStreams((started) => (h = started));
/** The last progress published for each user. */
const lastProgress = new Map<string, number>();

beforeAll(async () => {
  // Plain publishes (the stream stores them all the same), far faster than one acknowledged publish each.
  const versions = new Map<string, number>();
  for (let n = 0; n < EVENTS; n++) {
    const user = `u${n % USERS}`;
    const ids = { access_id: deriveAccessId(user, "algebra"), user_id: user, course_id: "algebra" };
    const version = (versions.get(user) ?? 0) + 1;
    versions.set(user, version);
    const granted = version === 1;
    if (!granted) lastProgress.set(user, n % 101);
    const m = accessEventMessage(granted ? "CourseAccessGranted" : "ProgressUpdated", ids, version, granted ? { expires_at: null } : { progress: n % 101 });
    h.nc.publish(m.subject, m.data, { headers: m.headers });
  }
  await h.nc.flush();
  const deadline = Date.now() + 20_000;
  let stored = 0;
  while ((stored = (await h.jsm.streams.info("EVENTS_ACCESS")).state.messages) < EVENTS && Date.now() < deadline) await sleep(20);
  expect(stored, "events stored").toBe(EVENTS);
}, 60_000);

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => void process.on("unhandledRejection", onUnhandled));
afterAll(() => void process.off("unhandledRejection", onUnhandled));

/** Starts a gateway on a port known before it listens, on its own connection; `started` resolves as startGateway does. */
async function starting(): Promise<{ port: number; nc: NatsConnection; started: Promise<Gateway> }> {
  const port = await freePort();
  const nc = await connect({ servers: h.nats.url, noAsyncTraces: true });
  const started = startGateway({ nc, port, host: "127.0.0.1", jwtSecret: SECRET, queryTimeoutMs: 200, logger: createLogger(process.env.GATEWAY_TEST_LOG ?? "silent") });
  started.catch(() => undefined); // awaited by the test
  return { port, nc, started };
}

const url = (port: number, path: string) => `http://127.0.0.1:${port}${path}`;

/** The first answer on `path`, polled from before the port listens (a refused connection is tried again). */
async function firstAnswer(port: number, path: string, ms = 10_000): Promise<Response> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fetch(url(port, path));
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nothing answered ${path} within ${ms} ms`, { cause: err });
      await sleep(5);
    }
  }
}

/** An upgrade's refusal: status, Retry-After and body (or 101 when it was accepted). */
function upgradeRefusal(port: number, userToken: string): Promise<{ status: number; retryAfter?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws?token=${userToken}`);
    ws.once("open", () => {
      ws.terminate();
      resolve({ status: 101, body: "" });
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] as string | undefined, body }));
    });
    ws.once("error", reject);
  });
}

describe("the start-up replay", () => {
  it("leaves health and metrics answering, readiness 503 and upgrades refused until it is done; then all is as before", async () => {
    const { port, nc, started } = await starting();
    let gw: Gateway | undefined;
    const u7 = await token("u7");
    try {
      // The old gateway listened only after its replay: here the port answers while it runs.
      const health = await firstAnswer(port, "/healthz");
      expect([health.status, await health.text()]).toEqual([200, "ok"]);

      // Side by side, since the replay competes with them for the event loop; each answer shows it came during the replay.
      const [refused, ready, metrics] = await Promise.all([upgradeRefusal(port, u7), fetch(url(port, "/readyz")), fetch(url(port, "/metrics"))]);
      expect(refused).toEqual({ status: 503, retryAfter: "2", body: "warming up: the gateway is replaying EVENTS_ACCESS; retry shortly" });
      expect(ready.status).toBe(503);
      const body = (await ready.json()) as { replay: { read: number; of: number } };
      expect(body).toMatchObject({ ready: false, nats: true, warm: false, streams: { EVENTS_ACCESS: true } });
      expect([0, EVENTS]).toContain(body.replay.of); // 0 until the replay knows its range
      expect(body.replay.read).toBeLessThan(EVENTS);
      expect(metrics.status).toBe(200);
      const during = await metrics.text();
      expect(during).toMatch(/^nerve_ready 0$/m);
      // What the not-ready alert leaves to NerveWarmUpSlow.
      expect(during).toMatch(/^nerve_gateway_warming 1$/m);
      gw = await started;
      await gw.warmedUp;
      expect(gw.log.head).toBe(EVENTS);
      // Readiness is cached for a second: it turns 200 within that.
      const deadline = Date.now() + 3000;
      let after = await fetch(url(port, "/readyz"));
      while (after.status !== 200 && Date.now() < deadline) {
        await sleep(100);
        after = await fetch(url(port, "/readyz"));
      }
      expect(after.status).toBe(200);
      const afterBody = await after.json();
      expect(afterBody).toMatchObject({ ready: true, warm: true });
      expect(afterBody).not.toHaveProperty("replay");
      // /metrics is rendered at most once a second: it says so within that.
      let warming = "";
      while (!/^nerve_gateway_warming 0$/m.test(warming) && Date.now() < deadline + 2000) {
        await sleep(100);
        warming = await (await fetch(url(port, "/metrics"))).text();
      }
      expect(warming).toMatch(/^nerve_gateway_warming 0$/m);

      const learner = await TestClient.as(port, "u7");
      const welcome = await learner.welcome();
      expect(welcome.user_id).toBe("u7");
      expect(welcome.progress).toMatchObject([{ course_id: "algebra", progress: lastProgress.get("u7") }]);
      await learner.close();
    } finally {
      await (gw ?? (await started)).stop();
      await nc.close();
    }
  });

  it("stops cleanly during it: nothing listens or reads after stop, nothing fails", async () => {
    const failuresBefore = backgroundFailures.get("gateway warm-up") ?? 0;
    // At once, while the replay looks for its range; and once it is reading.
    for (const when of ["at once", "while reading"] as const) {
      const { port, nc, started } = await starting();
      try {
        const gw = await started;
        if (when === "while reading") {
          const deadline = Date.now() + 5000;
          while (gw.log.head < 1 && Date.now() < deadline) await sleep(2);
          expect(gw.log.head, "reading").toBeGreaterThan(0);
        }
        await gw.stop();
        await gw.warmedUp; // resolved by the stop: nobody waits for a replay that will never end
        const head = gw.log.head;
        expect(head, when).toBeLessThan(EVENTS);
        await expect(fetch(url(port, "/healthz")), when).rejects.toThrow();
        await sleep(200);
        expect(gw.log.head, `${when}: read nothing after stop`).toBe(head);
      } finally {
        await nc.close();
      }
    }
    expect(backgroundFailures.get("gateway warm-up") ?? 0).toBe(failuresBefore);
    expect(unhandled).toEqual([]);
  });

  it("deletes its ordered consumer on EVENTS_ACCESS at stop (was: left to the server's 5-minute inactivity threshold, piling up in a crash loop)", async () => {
    const names = async () => {
      const out: string[] = [];
      for await (const c of h.jsm.consumers.list("EVENTS_ACCESS")) if (!c.config.durable_name) out.push(c.name);
      return out;
    };
    const before = await names();
    const { nc, started } = await starting();
    try {
      const gw = await started;
      await gw.warmedUp;
      expect((await names()).length).toBe(before.length + 1);
      await gw.stop();
      expect(await names()).toEqual(before);
    } finally {
      await nc.close();
    }
  });
});
