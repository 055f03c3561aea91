/**
 * `npm run bench:sqlite-writer`: who commits on SQLite — the main connection (`NERVE_SQLITE_WRITER=main`)
 * or the write worker (`worker`) — measured back to back against one nats-server, each on a fresh file:
 * durable commands/s and CPU per command at 256 in flight (closed loop), then lone commands one at a
 * time at a fixed pace (open loop; latency from the intended send time, so a stall is not hidden).
 * `BENCH_ROUNDS=n` repeats the pair (default 2, alternating), `BENCH_QUICK=1` shrinks everything.
 */
import { connect } from "@nats-io/transport-node";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack, encodeMsgPack } from "../contracts/index.js";
import { startNerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { startNatsServer } from "../test/support/nats-server.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { Cleanup } from "./cleanup.js";
import { commandOf } from "./command-load.js";
import { profileLoad, registerUsers, userIds, waitConfirmed } from "./durable-commands.js";
import { startLoadClient } from "./load-client.js";
import { summarize } from "./percentiles.js";
import { table } from "./table.js";

type Variant = "main" | "worker";
const quick = process.env.BENCH_QUICK === "1";
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2));
const USERS = quick ? 50 : 500;
const COMMANDS = quick ? 1_000 : 10_000;
const INFLIGHT = 256;
const LONE = { count: quick ? 50 : 300, perSecond: 20 };

/** One command at a time, sent on a fixed schedule; each latency counts from when it should have been sent. */
async function loneCommands(nc: NatsConnection, ids: string[], count: number, perSecond: number): Promise<{ p50: number; p99: number; max: number; failed: number }> {
  const h = natsHeaders();
  h.set("Content-Type", "application/msgpack");
  const latencies: number[] = [];
  let failed = 0;
  const interval = 1000 / perSecond;
  const start = performance.now() + interval;
  for (let i = 0; i < count; i++) {
    const intended = start + i * interval;
    const wait = intended - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const c = commandOf({ kind: "profile", ids, count, inflight: 1, tag: `lone-${Date.now().toString(36)}`, deadline: Infinity }, i);
    const reply = await nc.request(c.subject, encodeMsgPack(c.body), { timeout: 10_000, headers: h }).catch(() => undefined);
    latencies.push(performance.now() - intended);
    const body = reply && decodeMsgPack(reply.data);
    if (!(body?.ok && (body.value as { ok?: boolean }).ok)) failed++;
  }
  const s = summarize(latencies);
  return { p50: s.p50, p99: s.p99, max: s.max, failed };
}

async function measure(variant: Variant, natsUrl: string, serverPid: number, client: NatsConnection, cleanup: Cleanup, logger = createLogger("silent")) {
  const file = await tempSqlitePath();
  const dropFile = cleanup.add(`sqlite ${variant}`, () => file.cleanup());
  const env = { NATS_URL: natsUrl, NERVE_DB: `sqlite:${file.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", NERVE_MAILBOX_SIZE: "4096", NERVE_SQLITE_WRITER: variant };
  const nerve = await startNerve(loadConfig(env), logger);
  const stop = cleanup.add(`nerve ${variant}`, () => nerve.stop());
  const load = await startLoadClient(natsUrl, "main");
  const closeLoad = cleanup.add(`load ${variant}`, () => load.close());
  try {
    const ids = userIds(USERS).map((id) => `${id}-${variant}`);
    await registerUsers(load, ids, INFLIGHT, Date.now() + 60_000);
    const jsm = await (await import("@nats-io/jetstream")).jetstreamManager(client);
    const already = (await jsm.streams.info("EVENTS_USERS")).state.messages;
    await waitConfirmed(nerve, client, already, Date.now() + 60_000);
    const phase = await profileLoad(nerve, client, load, { label: variant, ids, count: COMMANDS, inflight: INFLIGHT, deadline: Date.now() + 90_000, serverPid });
    await waitConfirmed(nerve, client, phase.expectedMessages, Date.now() + 60_000);
    const lone = await loneCommands(client, ids, LONE.count, LONE.perSecond);
    return { variant, phase, lone };
  } finally {
    await closeLoad();
    await stop();
    await dropFile();
  }
}

async function main(): Promise<void> {
  const cleanup = new Cleanup();
  try {
    const nats = await startNatsServer();
    cleanup.add("nats-server", () => nats.stop());
    const client = await connect({ servers: nats.url, name: "bench-client", noAsyncTraces: true });
    cleanup.add("client", () => client.close());
    const rows: (string | number)[][] = [];
    for (let r = 0; r < rounds; r++) {
      const order: Variant[] = r % 2 === 0 ? ["main", "worker"] : ["worker", "main"];
      for (const v of order) {
        const m = await measure(v, nats.url, nats.pid, client, cleanup);
        const p = m.phase;
        const fails = Object.values(p.load.failed).reduce((a, b) => a + b, 0) + m.lone.failed;
        rows.push([r + 1, v, Math.round(p.load.perSecond), p.load.latency.p50, p.load.latency.p99, Math.round(p.eventLoop.processCpuMsPerCommand * 1000), Math.round((p.eventLoop.mainThreadCpuMsPerCommand ?? NaN) * 1000), Math.round((p.serverCpuMsPerCommand ?? NaN) * 1000), p.eventLoop.utilization.toFixed(2), p.writer.averageBatch.toFixed(1), m.lone.p50, m.lone.p99, m.lone.max, fails]);
        console.log(`round ${r + 1} ${v}: ${Math.round(p.load.perSecond)} commands/s, lone p50 ${m.lone.p50.toFixed(2)} ms p99 ${m.lone.p99.toFixed(2)} ms`);
      }
    }
    console.log(
      table(`SQLite writer: main connection vs write worker (${COMMANDS} UpdateUserProfile at ${INFLIGHT} in flight over ${USERS} users; then ${LONE.count} lone commands at ${LONE.perSecond}/s, latency from the intended send time)`, ["round", "writer", "commands/s", "p50 ms", "p99 ms", "process CPU µs/cmd", "main thread µs/cmd", "nats-server µs/cmd", "event loop busy", "avg batch", "lone p50 ms", "lone p99 ms", "lone max ms", "failed"], rows),
    );
  } finally {
    await cleanup.run();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
