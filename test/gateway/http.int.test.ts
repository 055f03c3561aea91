import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { streamConfig } from "../../src/nats/index.js";
import { startNatsServer, type TestNerve } from "../support/index.js";
import { Gauge } from "prom-client";
import { METRICS_REUSE_MS } from "../../src/gateway/metrics.js";
import { TestClient, grant, progress, sleep, startTestGateway, useNerveAndGateway, type TestGateway } from "./support.js";

let t: TestNerve;
let gw: TestGateway;
useNerveAndGateway((started) => ({ t, gw } = started), { devTokens: true });

const get = (port: number, path: string) => fetch(`http://127.0.0.1:${port}${path}`);

describe("HTTP", () => {
  it("reports a real port, health and readiness", async () => {
    expect(gw.port).toBeGreaterThan(0);
    const health = await get(gw.port, "/healthz");
    expect([health.status, await health.text()]).toEqual([200, "ok"]);
    const ready = await get(gw.port, "/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, nats: true, warm: true, streams: { EVENTS_ACCESS: true, EVENTS_USERS: true } });
    expect((await get(gw.port, "/nope")).status).toBe(404);
  });

  it("is not ready while streams are missing", async () => {
    const nats = await startNatsServer();
    const nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.add(streamConfig("EVENTS_ACCESS", "events.access.>"));
    const partial = await startTestGateway(nats.url);
    try {
      const ready = await get(partial.port, "/readyz");
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ ready: false, nats: true, streams: { EVENTS_ACCESS: true, EVENTS_ORDERS: false } });
    } finally {
      await partial.close();
      await nc.close();
      await nats.stop();
    }
  });

  it("serves Prometheus metrics: connections, frames sent, push latency, commands by result", async () => {
    await grant(t.client, "ada", "algebra");
    const ada = await TestClient.ready(gw.port, "ada");
    await progress(t.client, "ada", "algebra", 30);
    await ada.until((c) => c.events.some((f) => f.event.payload.progress === 30));
    ada.send({ type: "UpdateProgress", request_id: "m", course_id: "algebra", progress: 31 });
    await ada.ack("m");
    await new Promise((r) => setTimeout(r, 50));
    const res = await get(gw.port, "/metrics");
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^nerve_gateway_connections 1$/m);
    expect(text).toMatch(/^nerve_gateway_frames_sent_total\{type="welcome"\} 1$/m);
    expect(text).toMatch(/^nerve_gateway_frames_sent_total\{type="event"\} [1-9]/m);
    expect(text).toMatch(/^nerve_gateway_frames_sent_total\{type="ack"\} 1$/m);
    expect(text).toMatch(/^nerve_gateway_push_latency_seconds_count [1-9]/m);
    expect(text).toMatch(/^nerve_gateway_push_latency_seconds_bucket\{le="0.05"\} [1-9]/m);
    expect(text).toMatch(/^nerve_gateway_commands_total\{result="ok"\} 1$/m);
    expect(text).toMatch(/^nerve_gateway_process_resident_memory_bytes \d+/m);
    // /readyz's checks apart (the not-ready alert pages on any but the warm-up).
    for (const check of ["nats", "streams", "api", "warm"]) expect(text).toMatch(new RegExp(`^nerve_ready_check\\{check="${check}"\\} 1$`, "m"));
    // Counted on the hot path in plain fields, read at scrape time.
    expect(text).toMatch(/^nerve_gateway_events_total\{outcome="delivered"\} [1-9]/m);
    expect(text).toMatch(/^nerve_gateway_stream_head [1-9]/m);
    expect(text).toMatch(/^nerve_gateway_buffered_events [1-9]/m);
    const delivered = Number(/^nerve_gateway_events_total\{outcome="delivered"\} (\d+)/m.exec(text)![1]);
    await progress(t.client, "ada", "algebra", 32);
    await ada.until((c) => c.events.some((f) => f.event.payload.progress === 32));
    await sleep(METRICS_REUSE_MS + 100); // the text above is served again for a second
    const again = await (await get(gw.port, "/metrics")).text();
    expect(Number(/^nerve_gateway_events_total\{outcome="delivered"\} (\d+)/m.exec(again)![1])).toBe(delivered + 1);
    await ada.close();
  });

  it("renders /metrics once for many requests at a time, HEAD too (the reuse rules on a clock of their own: metrics-render.unit)", async () => {
    // Counts renders; each takes 100 ms, so that the later requests come while one is running.
    let renders = 0;
    new Gauge({
      name: "test_metrics_renders",
      help: "renders of the registry",
      registers: [gw.metrics.registry],
      async collect() {
        this.set(++renders);
        await sleep(100);
      },
    });
    const rendered = (text: string) => Number(/^test_metrics_renders (\d+)$/m.exec(text)?.[1]);
    const scrape = async () => {
      const res = await get(gw.port, "/metrics");
      expect(res.status).toBe(200);
      return rendered(await res.text());
    };
    try {
      await sleep(METRICS_REUSE_MS + 100); // no render of the tests before is served any more
      const first = scrape();
      await sleep(20);
      const head = fetch(`http://127.0.0.1:${gw.port}/metrics`, { method: "HEAD" });
      const together = await Promise.all([first, ...Array.from({ length: 99 }, scrape)]);
      expect((await head).status).toBe(200);
      expect(renders).toBe(1);
      expect(new Set(together)).toEqual(new Set([1]));
    } finally {
      gw.metrics.registry.removeSingleMetric("test_metrics_renders");
    }
  });

  it("serves the page, and development tokens only when enabled", async () => {
    const page = await get(gw.port, "/");
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain("/v1/ws");
    expect(html).toContain("const DEV_TOKENS = true;");
    const tok = await get(gw.port, "/dev/token?user_id=erin");
    const body = (await tok.json()) as { token: string; user_id: string };
    expect(body.user_id).toBe("erin");
    const erin = await TestClient.connect(gw.port, { token: body.token });
    expect((await erin.welcome()).user_id).toBe("erin");
    await erin.close();
    expect((await get(gw.port, "/dev/token?user_id=a.b")).status).toBe(400);

    const prod = await startTestGateway(t.nats.url);
    try {
      expect((await get(prod.port, "/dev/token?user_id=erin")).status).toBe(404);
      expect(await (await get(prod.port, "/")).text()).toContain("const DEV_TOKENS = false;");
    } finally {
      await prod.close();
    }
  });
});

describe("uWebSockets.js", () => {
  it("refuses to start on the package's JavaScript fallback", async () => {
    const script = `import("./src/gateway/uws.ts").then((m) => { try { m.loadUws(); console.log("loaded"); } catch (e) { console.log(e.name + ": " + e.message); } })`;
    const run = (env: Record<string, string>) =>
      promisify(execFile)(process.execPath, ["--import", "tsx", "-e", script], { cwd: process.cwd(), env: { ...process.env, ...env } }).then((r) => r.stdout.trim().split("\n").at(-1));
    expect(await run({})).toBe("loaded");
    expect(await run({ UWS_USE_FALLBACK: "1" })).toMatch(/^UwsUnavailableError: uWebSockets.js loaded its JavaScript fallback/);
  });
});
