/**
 * `npm run bench:lone-trace [-- KEY=VALUE …]`: where a command sent one at a time spends its time, and what
 * made the slow ones slow — Nerve against the durable floor + contract (bench/durable-floor.ts), each after a
 * warm-up at 256 in flight (`BENCH_LONE_WARM_UP`, 10,000). Issue #12's last target is this phase's p99 (≤ 5 ms);
 * one run's figures say little (bench:pairs judges it), this says why.
 *
 * For every command the client's send and reply times, and the main thread's time on a core and waiting for
 * one in between (its schedstat, the client shares the thread as in every command bench here); every socket
 * write and every chunk the NATS clients parse, by connection, with the subjects in it (socket writes and
 * `Parser.parse` wrapped for the phase: a diagnostic, not the service's code path); V8's collections. From
 * these each command's time splits into three legs — to the service (sent → the service's client parses the
 * request), in the service (→ the reply is written), back (→ the client parses it) — and each command over
 * 5 ms is put down to one cause: a collection that overlapped it by ≥ 2 ms; the main thread waiting ≥ 2 ms
 * for a core; else its longest leg — in the service with the thread neither running nor waiting to run for
 * ≥ 2 ms (a system call that blocked: the commit's fsync, the write lock), in the service on a core, or a NATS
 * leg (nats-server, or the main thread busy with something else when the message came). It prints the
 * median leg times, the causes, and the timelines of the slowest commands. KEY=VALUE arguments reach Nerve's
 * environment (e.g. NERVE_SQLITE_WRITER=worker).
 */
import { closeSync, openSync, readSync } from "node:fs";
import { Socket } from "node:net";
import { PerformanceObserver } from "node:perf_hooks";
import { connect } from "@nats-io/transport-node";
import { Parser } from "@nats-io/nats-core/internal";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { encodeMsgPack } from "../contracts/index.js";
import { Cleanup, runToEnd } from "./cleanup.js";
import { commandOf, failures, type CommandLoadResult, type LoadSpec } from "./command-load.js";
import { startNerveWithUsers, waitConfirmed } from "./durable-commands.js";
import { benchFloor } from "./floor.js";
import type { LoadClient } from "./load-client.js";
import { CAUSES, CLIENT, kindOf, legsOf, SLOW_MS, type Legs, type Phase, type WireEvent } from "./lone-legs.js";
import { median, percentile } from "./percentiles.js";
import { startRig } from "./rig.js";
import { table } from "./table.js";

const cleanup = new Cleanup();
const USERS = 1_000;
const LONE = Number(process.env.BENCH_LONE ?? 2_000);
const WARM_UP = Number(process.env.BENCH_LONE_WARM_UP ?? 10_000);
const extra = Object.fromEntries(process.argv.slice(2).map((a) => a.split("=", 2) as [string, string]));

/** Microseconds on the monotonic clock (the one schedstat, the wire log and the commands share). */
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** The calling thread's time on a core and waiting for one so far, µs (/proc/thread-self/schedstat: ns). */
function schedReader(): { read: () => [number, number]; close: () => void } {
  const fd = openSync("/proc/thread-self/schedstat", "r");
  const buf = Buffer.alloc(128);
  return {
    read: () => {
      const n = readSync(fd, buf, 0, buf.length, 0);
      const [run, wait] = buf.toString("latin1", 0, n).split(" ");
      return [Number(run) / 1000, Number(wait) / 1000];
    },
    close: () => closeSync(fd),
  };
}

/** Wraps Parser.parse and Socket.write while on; restores them when stopped. */
function wireLog(): { events: WireEvent[]; on: () => void; stop: () => void } {
  const events: WireEvent[] = [];
  const ports = new Map<number, string>();
  const proto = Parser.prototype as unknown as { parse(buf: Uint8Array): void };
  const parse = proto.parse;
  const write = Socket.prototype.write;
  let on = false;
  proto.parse = function (this: { dispatcher?: { options?: { name?: string }; transport?: { socket?: Socket } } }, buf: Uint8Array) {
    if (on) {
      const name = this.dispatcher?.options?.name ?? "?";
      const port = this.dispatcher?.transport?.socket?.localPort;
      if (port) ports.set(port, name);
      const text = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, 8192)).toString("latin1");
      events.push({ t: nowUs(), conn: name, dir: "R", kinds: [...text.matchAll(/(?:^|\n)H?MSG (\S+)/g)].map((m) => kindOf(m[1]!)) });
    }
    return parse.call(this, buf);
  };
  Socket.prototype.write = function (this: Socket, data: unknown, ...rest: unknown[]) {
    if (on && this.localPort && (typeof data === "string" || data instanceof Uint8Array)) {
      const text = typeof data === "string" ? data.slice(0, 8192) : Buffer.from(data.buffer, data.byteOffset, Math.min(data.length, 8192)).toString("latin1");
      events.push({ t: nowUs(), conn: ports.get(this.localPort) ?? String(this.localPort), dir: "W", kinds: [...text.matchAll(/(?:^|\n)H?PUB (\S+)/g)].map((m) => kindOf(m[1]!)) });
    }
    return (write as (...a: unknown[]) => boolean).call(this, data, ...rest);
  } as typeof Socket.prototype.write;
  return {
    events,
    on: () => {
      on = true;
    },
    stop: () => {
      on = false;
      proto.parse = parse;
      Socket.prototype.write = write;
    },
  };
}

/** UpdateUserProfile one at a time, each timed; the wire log and the collections over the same span. */
async function lonePhase(nc: NatsConnection, ids: string[], tag: string): Promise<Phase> {
  const h = natsHeaders();
  h.set("Content-Type", "application/msgpack");
  const p: Phase = { send: new Float64Array(LONE), recv: new Float64Array(LONE), run: new Float64Array(LONE), wait: new Float64Array(LONE), failed: 0, wire: [], gcs: [] };
  const sched = schedReader();
  // performance.now() is relative to timeOrigin; the offset puts a collection's start on nowUs()'s clock.
  const offset = nowUs() - performance.now() * 1000;
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) p.gcs.push({ start: offset + e.startTime * 1000, end: offset + (e.startTime + e.duration) * 1000 });
  });
  gcs.observe({ entryTypes: ["gc"] });
  const wire = wireLog();
  wire.on();
  try {
    for (let i = 0; i < LONE; i++) {
      const c = commandOf({ kind: "profile", ids, count: LONE, inflight: 1, tag, deadline: 0 } as LoadSpec, i);
      const data = encodeMsgPack(c.body);
      const [run0, wait0] = sched.read();
      p.send[i] = nowUs();
      try {
        await nc.request(c.subject, data, { timeout: 30_000, headers: h });
      } catch {
        p.failed++;
      }
      p.recv[i] = nowUs();
      const [run1, wait1] = sched.read();
      p.run[i] = run1 - run0;
      p.wait[i] = wait1 - wait0;
    }
  } finally {
    wire.stop();
    gcs.disconnect();
    sched.close();
  }
  p.wire = wire.events;
  return p;
}

function report(name: string, p: Phase, service: string): { row: (string | number)[]; causes: Map<string, number>; slowest: Legs[] } {
  const legs = legsOf(p, service);
  const sorted = legs.map((l) => l.ms).sort((a, b) => a - b);
  const ok = (xs: number[]) => xs.filter((x) => !Number.isNaN(x));
  const slow = legs.filter((l) => l.cause);
  const causes = new Map<string, number>();
  for (const l of slow) causes.set(l.cause!, (causes.get(l.cause!) ?? 0) + 1);
  const ms = (us: number) => (us / 1000).toFixed(3);
  return {
    row: [name, legs.length, p.failed, percentile(sorted, 50).toFixed(2), percentile(sorted, 99).toFixed(2), slow.length, ms(median(ok(legs.map((l) => l.toService)))), ms(median(ok(legs.map((l) => l.inService)))), ms(median(ok(legs.map((l) => l.back)))), ms(median(Array.from(p.run))), ms(median(Array.from(p.wait))), p.gcs.length],
    causes,
    slowest: [...slow].sort((a, b) => b.ms - a.ms).slice(0, 8),
  };
}

async function main(): Promise<void> {
  const after = (ms: number) => Date.now() + ms;
  const rig = await startRig(cleanup, "main");
  const { nats, client, load } = rig;
  const { nerve, stop: stopNerve, ids } = await startNerveWithUsers(cleanup, rig, USERS, extra);
  const nc = await connect({ servers: nats.url, name: CLIENT, noAsyncTraces: true });
  cleanup.add("trace client", () => nc.close());
  const w = await load.run({ kind: "profile", ids, count: WARM_UP, inflight: 256, tag: "warm-up", deadline: after(120_000) });
  if (failures(w) > 0 || w.cutShort) throw new Error(`Nerve's warm-up: ${failures(w)} failed`);
  await waitConfirmed(nerve, client, ids.length + w.events, after(60_000));
  const nervePhase = await lonePhase(nc, ids, "lone-trace");
  await stopNerve();
  // The durable floor + contract, warmed up alike; its lone phase through this same client (a LoadClient
  // whose one-at-a-time run is the traced phase; what benchFloor counts of it is not used).
  let floorPhase: Phase | undefined;
  const traced: LoadClient = {
    placement: "main",
    run: async (spec: LoadSpec): Promise<CommandLoadResult> => {
      if (spec.inflight !== 1) return load.run(spec);
      floorPhase = await lonePhase(nc, ids, "lone-trace-floor");
      return load.run({ ...spec, count: 1 });
    },
    close: async () => undefined,
  };
  const readers = { count: 1, ack: "all" as const };
  await benchFloor(nats.url, load, { ids, count: WARM_UP, inflight: 256, deadline: after(120_000), readers, durable: "contract" });
  await benchFloor(nats.url, traced, { ids, count: LONE, inflight: 1, deadline: after(120_000), readers, durable: "contract" });
  const reports = [report("Nerve", nervePhase, "nerve"), report("durable floor + contract", floorPhase!, "bench-floor")];
  console.log(`environment: ${JSON.stringify(extra)}; ${LONE} commands one at a time after a warm-up of ${WARM_UP} at 256 in flight`);
  console.log(
    table(
      "One at a time: latency (ms), commands over 5 ms, and the median legs (ms): to the service, in it, back; the main thread's time on a core and waiting for one per command",
      ["subject", "commands", "failed", "p50", "p99", `over ${SLOW_MS} ms`, "to service", "in service", "back", "on a core", "waiting for one", "collections"],
      reports.map((r) => r.row),
    ),
  );
  console.log(table(`The commands over ${SLOW_MS} ms by cause (see the file's header for the rules)`, ["cause", ...reports.map((_, i) => (i === 0 ? "Nerve" : "durable floor + contract"))], CAUSES.map((c) => [c, ...reports.map((r) => r.causes.get(c) ?? 0)])));
  for (const [i, r] of reports.entries()) {
    console.log(`\nthe slowest of ${i === 0 ? "Nerve" : "the durable floor + contract"} (µs from the send: connection, W(rote) or R(ead), the subjects' kinds):`);
    for (const l of r.slowest) console.log(`  ${l.ms.toFixed(2)} ms, ${l.cause}: ${l.timeline}`);
  }
}

runToEnd(main, { budgetMs: 300_000, cleanup, writeResults: async () => undefined });
