/**
 * Child process of the gateway bench: runs one delivery server — `uws` (the gateway) or `ws` (the
 * plain baseline) — on its own NATS connection and answers the parent over IPC: `ready` with the
 * port, `rss` after a full GC, `stop`. Run with `--expose-gc`. Knobs for experiments:
 * BENCH_GATEWAY_FLUSH_MS and BENCH_GATEWAY_MAX_EVENTS (gateway options), BENCH_CPU_PROFILE=<dir>.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { connect } from "@nats-io/transport-node";
import { startGateway } from "../src/gateway/index.js";
import { createLogger } from "../src/log/index.js";
import { startWsBaseline } from "./gateway-ws-baseline.js";

/** Messages from the parent. */
export type ServerCommand = { type: "rss" } | { type: "stop" };
/** Messages to the parent. */
export type ServerReply = { type: "ready"; port: number } | { type: "rss"; rss: number; heapUsed: number; connections?: number } | { type: "stopped" };

const send = (m: ServerReply) => process.send!(m);
const mode = process.argv[2];
const nc = await connect({ servers: process.env.NATS_URL!, noAsyncTraces: true, name: `bench-${mode}` });
const secret = process.env.BENCH_JWT_SECRET!;
const server =
  mode === "uws"
    ? await startGateway({
        nc,
        port: 0,
        host: "127.0.0.1",
        jwtSecret: secret,
        logger: createLogger("warn"),
        heartbeatSeconds: 120,
        ...(process.env.BENCH_GATEWAY_FLUSH_MS ? { flushMs: Number(process.env.BENCH_GATEWAY_FLUSH_MS) } : {}),
        ...(process.env.BENCH_GATEWAY_MAX_EVENTS ? { retention: { maxEvents: Number(process.env.BENCH_GATEWAY_MAX_EVENTS) } } : {}),
      })
    : await startWsBaseline({ nc, port: 0, jwtSecret: secret });
if ("warmedUp" in server) await server.warmedUp; // upgrades are refused until the start-up replay is done
send({ type: "ready", port: server.port });

// BENCH_CPU_PROFILE=<dir>: a CPU profile of this server, written when it stops.
const profileDir = process.env.BENCH_CPU_PROFILE;
const inspector = profileDir ? new Session() : undefined;
if (inspector) {
  inspector.connect();
  await inspector.post("Profiler.enable");
  await inspector.post("Profiler.start");
}

process.on("message", (m: ServerCommand) => {
  if (m.type === "rss") {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    setTimeout(() => {
      gc?.();
      const mem = process.memoryUsage();
      send({ type: "rss", rss: mem.rss, heapUsed: mem.heapUsed });
    }, 500);
  } else if (m.type === "stop") {
    void (async () => {
      if (inspector) writeFileSync(`${profileDir}/${mode}-${process.pid}.cpuprofile`, JSON.stringify((await inspector.post("Profiler.stop")).profile));
    })()
      .then(() => server.stop())
      .then(() => nc.close())
      .finally(() => {
        send({ type: "stopped" });
        process.exit(0);
      });
  }
});
