/**
 * The gateway bench (`node --import tsx bench/gateway.ts`, or `runGatewayBench()` from run.ts):
 * with N connected learners (10,000 unless the fd limit forbids), for the uWS gateway and, side by
 * side, a plain `ws` server doing the same delivery:
 *  - server RSS per idle connection;
 *  - push latency at fixed update rates, driven through the command path (UpdateProgress; latency
 *    from the command reply to the frame received, and from JetStream storing the event to the frame);
 *  - the same rates published straight to EVENTS_ACCESS (publish ack → frame), which isolates the
 *    delivery server from what the command path can sustain on this machine;
 *  - delivered frames/s while events flood the stream;
 *  - the server CPU per frame in pairs of further floods (`BENCH_GATEWAY_FLOOD_PAIRS`, 3 by default),
 *    each server fresh on an emptied stream, alternating which goes first: the median of the pairs'
 *    uWS ÷ ws ratios is the figure of the target, steadier than one flood of each.
 * Nerve (src/main.ts), nats-server and each delivery server run as their own processes; the
 * learners' sockets live in this one. `BENCH_QUICK=1` makes it small.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { signToken } from "../src/gateway/index.js";
import { freePort, startNatsServer } from "../test/support/nats-server.js";
import { startServiceProcess } from "../test/support/service-process.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { ClientFleet, LatencyBook } from "./gateway-clients.js";
import { Learners, eventsAtRate, floodBatch, floodEvents, grantAll, progressAtRate, watchStoreTimes, type RatePhase } from "./gateway-load.js";
import { ServerChild, fdLimit } from "./gateway-process.js";
import { processCpuMs } from "./thread-cpu.js";
import { median, percentile } from "./percentiles.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SECRET = "gateway-bench-secret-0123456789";
const MODES = ["uws", "ws"] as const;
/** Targets of the issue. */
export const GATEWAY_TARGETS = { p99Ms: 50, p99AtRate: 5000, rssPerIdleConnectionBytes: 4096 } as const;

/** Sizes of a run. */
export interface GatewayBenchOptions {
  learners: number;
  rates: number[];
  phaseMs: number;
  warmupMs: number;
  floodMs: number;
  /** Events prepared for the flood. */
  floodEvents: number;
  /**
   * Extra floods after phase B, in pairs of the two servers (uWS first, then `ws` first, alternately),
   * each on a fresh server and an emptied stream: the ratio of CPU per frame within each pair, and the
   * median over the pairs, which the run-to-run drift of this VM's speed moves far less than one flood.
   */
  floodPairs: number;
}

/** One fixed-rate phase: p50/p99/max from the driving side (command reply or publish ack) to frame, and from JetStream's store time. */
export type LatencyFigures = RatePhase & { frames: number; missing: number; p50Ms: number; p99Ms: number; maxMs: number; storedP50Ms: number; storedP99Ms: number } & FrameCpu;

/**
 * CPU per delivered frame: the delivery server's, this process's (the learners' sockets and the load),
 * and, where they run, Nerve's (the command path with its consumers) and nats-server's; with their sum,
 * the rate the machine's cores allow at that cost.
 */
export interface FrameCpu {
  serverCpuUsPerFrame?: number | undefined;
  benchCpuUsPerFrame?: number | undefined;
  nerveCpuUsPerFrame?: number | undefined;
  natsCpuUsPerFrame?: number | undefined;
  /** Every process above together. */
  machineCpuUsPerFrame?: number | undefined;
  /** The frames per second the machine's cores allow at that cost. */
  cpuBoundRate?: number | undefined;
}

/** Starts counting CPU of the server `pid`, of this process, and of Nerve and nats-server where given; the result gives µs per frame. */
function frameCpu(pid: number, others: { nerve?: number | undefined; nats?: number | undefined } = {}): (frames: number) => FrameCpu {
  const read = () => ({ server: processCpuMs(pid), nerve: others.nerve === undefined ? undefined : processCpuMs(others.nerve), nats: others.nats === undefined ? undefined : processCpuMs(others.nats) });
  const before = read();
  const self0 = process.cpuUsage();
  return (frames) => {
    const after = read();
    const self = process.cpuUsage(self0);
    if (frames <= 0) return {};
    const per = (k: "server" | "nerve" | "nats") => (before[k] !== undefined && after[k] !== undefined ? round(((after[k]! - before[k]!) * 1000) / frames, 2) : undefined);
    const figures: FrameCpu = { serverCpuUsPerFrame: per("server"), benchCpuUsPerFrame: round((self.user + self.system) / frames, 2), nerveCpuUsPerFrame: per("nerve"), natsCpuUsPerFrame: per("nats") };
    const machine = (figures.serverCpuUsPerFrame ?? 0) + figures.benchCpuUsPerFrame! + (figures.nerveCpuUsPerFrame ?? 0) + (figures.natsCpuUsPerFrame ?? 0);
    return { ...figures, machineCpuUsPerFrame: round(machine, 1), cpuBoundRate: machine > 0 ? Math.round((cpus().length * 1e6) / machine) : undefined };
  };
}

/** One delivery server's figures. */
export interface ServerFigures {
  connectSeconds: number;
  rssBeforeBytes: number;
  /** RSS with half of the learners connected. */
  rssHalfBytes: number;
  rssAfterBytes: number;
  /** Least-squares slope of RSS over the connection count, read at a fifth, two fifths, … all of the learners. */
  rssPerConnectionBytes: number;
  /** The readings the slope is fitted to: [connections, RSS bytes]. */
  rssReadings: [number, number][];
  commandPath: LatencyFigures[];
  direct: LatencyFigures[];
  saturation?: FloodFigures;
  closedEarly: number;
}

/** One flood: events stored and frames delivered, with the CPU they took. */
export type FloodFigures = { eventsStored: number; publishPerSecond: number; framesDelivered: number; framesPerSecond: number; drainSeconds: number } & FrameCpu;

/** A pair of extra floods: each server's figures and the ratio of their server CPU per frame. */
export interface FloodPair {
  first: (typeof MODES)[number];
  uws: FloodFigures;
  ws: FloodFigures;
  /** uWS server CPU per frame ÷ ws's. */
  ratio: number | undefined;
}

/** The options for this environment (`BENCH_QUICK=1`: a smoke-sized run). */
export function gatewayBenchOptions(env: Record<string, string | undefined> = process.env): GatewayBenchOptions {
  const quick = env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true";
  return quick
    ? { learners: 500, rates: [200, 1000], phaseMs: 2500, warmupMs: 500, floodMs: 2000, floodEvents: 40_000, floodPairs: Number(env.BENCH_GATEWAY_FLOOD_PAIRS ?? 1) }
    : { learners: 10_000, rates: [1000, 5000], phaseMs: 6000, warmupMs: 1000, floodMs: 5000, floodEvents: 200_000, floodPairs: Number(env.BENCH_GATEWAY_FLOOD_PAIRS ?? 3) };
}

const round = (v: number, d = 1) => Math.round(v * 10 ** d) / 10 ** d;
/** The median of the flood pairs' ratios, to three places; undefined without any. */
const medianOrNone = (xs: number[]) => (xs.length === 0 ? undefined : round(median(xs), 3));

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return sxx === 0 ? 0 : sxy / sxx;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the bench; resolves with its figures. */
export async function runGatewayBench(opts: GatewayBenchOptions = gatewayBenchOptions(), log: (line: string) => void = (l) => console.error(l)): Promise<Record<string, unknown>> {
  const startedAt = Date.now();
  const { soft, hard } = fdLimit();
  const learnerCount = Math.min(opts.learners, soft - 1024);
  if (learnerCount < opts.learners) log(`ulimit -n is ${soft} (hard ${hard}): ${learnerCount} learners instead of ${opts.learners}; raise it with \`ulimit -n ${opts.learners + 2048}\``);
  const learners = new Learners(learnerCount);
  const book = new LatencyBook(); // driving side → frame (performance.now)
  const stored = new LatencyBook(); // JetStream store time → frame (wall clock)
  const onProgress = (key: string) => {
    book.frame(key, performance.now());
    stored.frame(key, Date.now());
  };
  const nats = await startNatsServer();
  const db = await tempSqlitePath();
  const nc = await connect({ servers: nats.url, noAsyncTraces: true, name: "gateway-bench" });
  let nerve: Awaited<ReturnType<typeof startServiceProcess>> | undefined;
  const children: ServerChild[] = [];
  const servers = {} as Record<(typeof MODES)[number], ServerFigures>;
  const start = async (mode: "uws" | "ws") => {
    const child = new ServerChild(mode, nats.url, Math.min(hard, learnerCount + 4096), SECRET);
    children.push(child);
    return { child, port: (await child.next("ready")).port };
  };
  const measure = async (fleet: ClientFleet, serverPid: number, what: string, run: (onWarm: () => void) => Promise<RatePhase>): Promise<LatencyFigures> => {
    book.reset();
    stored.reset();
    const framesBefore = fleet.frames;
    const cpu = frameCpu(serverPid, { nerve: nerve?.pid, nats: nats.pid });
    log(what);
    const phase = await run(() => stored.reset());
    const drainUntil = Date.now() + 10_000;
    while (book.waiting > 0 && Date.now() < drainUntil) await sleep(20);
    const sorted = [...book.samples].sort((a, b) => a - b);
    const storedSorted = [...stored.samples].sort((a, b) => a - b);
    return {
      ...phase,
      seconds: round(phase.seconds, 2),
      achievedPerSecond: Math.round(phase.achievedPerSecond),
      frames: fleet.frames - framesBefore,
      missing: book.waiting,
      p50Ms: round(percentile(sorted, 50)),
      p99Ms: round(percentile(sorted, 99)),
      maxMs: round(sorted.at(-1) ?? 0),
      storedP50Ms: round(percentile(storedSorted, 50)),
      storedP99Ms: round(percentile(storedSorted, 99)),
      ...cpu(fleet.frames - framesBefore),
    };
  };
  // Floods EVENTS_ACCESS with `events` and waits until the fleet has every stored event's frame (or 30 s).
  const flood = async (jsm: JetStreamManager, fleet: ClientFleet, serverPid: number, what: string, events: ReturnType<typeof floodBatch>): Promise<FloodFigures> => {
    log(`${what}: flooding EVENTS_ACCESS (${events.length} events, at most ${opts.floodMs / 1000} s)…`);
    const seqBefore = (await jsm.streams.info("EVENTS_ACCESS")).state.last_seq;
    const framesBefore = fleet.frames;
    const cpu = frameCpu(serverPid, { nats: nats.pid });
    const published = await floodEvents(nc, events, opts.floodMs);
    const storedCount = (await jsm.streams.info("EVENTS_ACCESS")).state.last_seq - seqBefore;
    const drainStart = performance.now();
    const drainUntil = Date.now() + 30_000;
    while (fleet.frames - framesBefore < storedCount && Date.now() < drainUntil) await sleep(20);
    const delivered = fleet.frames - framesBefore;
    const drainSeconds = (performance.now() - drainStart) / 1000;
    return {
      eventsStored: storedCount,
      publishPerSecond: Math.round(storedCount / published.seconds),
      framesDelivered: delivered,
      framesPerSecond: Math.round(delivered / (published.seconds + drainSeconds)),
      drainSeconds: round(drainSeconds, 2),
      ...cpu(delivered),
    };
  };
  const floodPairs: FloodPair[] = [];
  try {
    nerve = await startServiceProcess({ env: { NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, LOG_LEVEL: "warn", NERVE_HTTP_PORT: String(await freePort()), NERVE_JWT_SECRET: SECRET } });
    log(`granting ${learnerCount} learners…`);
    await grantAll(nc, learners);
    const storeWatch = await watchStoreTimes(nc, learners, stored);
    const tokens = await Promise.all(learners.ids.map((id) => signToken(SECRET, id, Math.floor(Date.now() / 1000) + 3600)));
    const topRate = Math.max(...opts.rates);
    log(`warming the command path: ${topRate} updates/s for ${(opts.warmupMs * 3) / 1000} s…`);
    await progressAtRate(nc, learners, new LatencyBook(), topRate, opts.warmupMs * 3, opts.warmupMs * 3);

    // Phase A, with the command path: memory per idle connection, then latency at fixed UpdateProgress rates.
    for (const mode of MODES) {
      const { child, port } = await start(mode);
      const rssBefore = await child.rss();
      const fleet = new ClientFleet(port, tokens, onProgress);
      log(`${mode}: connecting ${learnerCount} learners…`);
      // Memory is read at every fifth of the connections: the fitted slope is what one more idle
      // connection costs, free of start-up effects (heap pages freed after the replay and reused),
      // and steadier than two readings, either of which a collector returning pages can move.
      const half = Math.floor(learnerCount / 2);
      const readings: [number, number][] = [];
      let connectSeconds = 0;
      let rssHalf = rssBefore;
      for (let step = 1; step <= 5; step++) {
        const n = Math.floor((learnerCount * step) / 5);
        connectSeconds += await fleet.connectAll(256, n);
        await sleep(500);
        readings.push([n, await child.rss()]);
        if (n <= half) rssHalf = readings.at(-1)![1];
      }
      const rssAfter = readings.at(-1)![1];
      const commandPath: LatencyFigures[] = [];
      for (const rate of opts.rates) {
        commandPath.push(await measure(fleet, child.pid, `${mode}: ${rate} UpdateProgress/s for ${opts.phaseMs / 1000} s…`, (w) => progressAtRate(nc, learners, book, rate, opts.phaseMs, opts.warmupMs, w)));
      }
      servers[mode] = {
        connectSeconds: round(connectSeconds, 2),
        rssBeforeBytes: rssBefore,
        rssAfterBytes: rssAfter,
        rssHalfBytes: rssHalf,
        rssPerConnectionBytes: Math.round(slope(readings)),
        rssReadings: readings,
        commandPath,
        direct: [],
        closedEarly: fleet.closedEarly,
      };
      await fleet.closeAll();
      await child.stop();
    }

    // Phase B, without the command path (its consumers would compete for the CPU): events straight to the stream.
    await nerve.stop();
    nerve = undefined;
    const jsm = await jetstreamManager(nc);
    for (const mode of MODES) {
      const { child, port } = await start(mode);
      const fleet = new ClientFleet(port, tokens, onProgress);
      await fleet.connectAll();
      for (const rate of opts.rates) {
        servers[mode].direct.push(await measure(fleet, child.pid, `${mode}: ${rate} events/s published directly for ${opts.phaseMs / 1000} s…`, (w) => eventsAtRate(nc, learners, book, rate, opts.phaseMs, opts.warmupMs, w)));
      }
      fleet.mode = "count";
      servers[mode].saturation = await flood(jsm, fleet, child.pid, mode, floodBatch(learners, opts.floodEvents, mode === "uws" ? 0 : opts.floodEvents));
      servers[mode].closedEarly += fleet.closedEarly;
      await fleet.closeAll();
      await child.stop();
    }
    await storeWatch.close();

    // Phase C: pairs of floods, each server fresh on an emptied stream (the gateway replays nothing).
    for (let p = 0; p < opts.floodPairs; p++) {
      const order: readonly (typeof MODES)[number][] = p % 2 === 0 ? MODES : [...MODES].reverse();
      const pair = { first: order[0] } as FloodPair;
      for (const mode of order) {
        await jsm.streams.purge("EVENTS_ACCESS");
        const { child, port } = await start(mode);
        const fleet = new ClientFleet(port, tokens, onProgress);
        await fleet.connectAll();
        fleet.mode = "count";
        pair[mode] = await flood(jsm, fleet, child.pid, `${mode} (pair ${p + 1} of ${opts.floodPairs})`, floodBatch(learners, opts.floodEvents, p * opts.floodEvents));
        servers[mode].closedEarly += fleet.closedEarly;
        await fleet.closeAll();
        await child.stop();
      }
      pair.ratio = pair.uws.serverCpuUsPerFrame && pair.ws.serverCpuUsPerFrame ? round(pair.uws.serverCpuUsPerFrame / pair.ws.serverCpuUsPerFrame, 3) : undefined;
      log(`  pair ${p + 1}: server CPU per frame uWS ${pair.uws.serverCpuUsPerFrame} / ws ${pair.ws.serverCpuUsPerFrame} µs = × ${pair.ratio}`);
      floodPairs.push(pair);
    }
  } finally {
    for (const c of children) await c.stop().catch(() => undefined);
    await nerve?.stop().catch(() => undefined);
    await nc.close().catch(() => undefined);
    await nats.stop();
    await db.cleanup();
  }
  const at = (l: LatencyFigures[]) => l.find((x) => x.rate === GATEWAY_TARGETS.p99AtRate);
  return {
    startedAt: new Date(startedAt).toISOString(),
    seconds: round((Date.now() - startedAt) / 1000),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: round(totalmem() / 2 ** 30), node: process.version, fdLimit: { soft, hard } },
    learners: learnerCount,
    options: opts,
    servers,
    floodPairs,
    floodPairRatioMedian: medianOrNone(floodPairs.map((p) => p.ratio).filter((r): r is number => r !== undefined)),
    targets: {
      ...GATEWAY_TARGETS,
      p99MetViaCommandPath: at(servers.uws.commandPath) ? at(servers.uws.commandPath)!.p99Ms <= GATEWAY_TARGETS.p99Ms : null,
      p99MetDirect: at(servers.uws.direct) ? at(servers.uws.direct)!.p99Ms <= GATEWAY_TARGETS.p99Ms : null,
      rssMet: servers.uws.rssPerConnectionBytes <= GATEWAY_TARGETS.rssPerIdleConnectionBytes,
    },
  };
}

const cpuCell = (f: FrameCpu) => `${f.serverCpuUsPerFrame ?? "-"} / ${f.benchCpuUsPerFrame ?? "-"} / ${f.nerveCpuUsPerFrame ?? "-"} / ${f.natsCpuUsPerFrame ?? "-"}`;
const budgetCell = (f: FrameCpu) => `${f.machineCpuUsPerFrame ?? "-"} µs → ${f.cpuBoundRate ?? "-"}/s`;

/** The side-by-side table of a result. */
export function gatewayTable(result: Record<string, unknown>): string {
  const s = result.servers as Record<(typeof MODES)[number], ServerFigures>;
  const rows: string[][] = [[`${String(result.learners)} learners`, "uWS gateway", "plain ws"]];
  const both = (label: string, f: (x: ServerFigures) => string) => rows.push([label, f(s.uws), f(s.ws)]);
  both("connect all", (x) => `${x.connectSeconds} s`);
  both("RSS per idle connection (fitted)", (x) => `${(x.rssPerConnectionBytes / 1024).toFixed(2)} KiB (${(x.rssBeforeBytes / 2 ** 20).toFixed(0)} → ${x.rssReadings.map(([, r]) => (r / 2 ** 20).toFixed(0)).join(" → ")} MiB)`);
  for (const [kind, label] of [["commandPath", "UpdateProgress"], ["direct", "direct publish"]] as const) {
    s.uws[kind].forEach((l, i) => {
      const r = (x: ServerFigures) => x[kind][i]!;
      both(`${l.rate}/s ${label}: achieved`, (x) => `${r(x).achievedPerSecond}/s (${r(x).failed} failed, ${r(x).missing} missing)`);
      both(`  ${kind === "direct" ? "ack" : "reply"}→frame p50/p99/max`, (x) => `${r(x).p50Ms} / ${r(x).p99Ms} / ${r(x).maxMs} ms`);
      both("  stored→frame p50/p99", (x) => `${r(x).storedP50Ms} / ${r(x).storedP99Ms} ms`);
      both("  CPU µs/frame: server / bench / Nerve / nats", (x) => cpuCell(r(x)));
      both("  machine CPU/frame → CPU-bound rate", (x) => budgetCell(r(x)));
    });
  }
  both("flood: frames/s delivered", (x) => `${x.saturation?.framesPerSecond ?? "-"}/s (stored ${x.saturation?.publishPerSecond ?? "-"}/s)`);
  both("  CPU µs/frame: server / bench / Nerve / nats", (x) => (x.saturation ? cpuCell(x.saturation) : "-"));
  const pairs = (result.floodPairs as FloodPair[] | undefined) ?? [];
  pairs.forEach((p, i) => rows.push([`flood pair ${i + 1} (${p.first} first): server µs/frame`, `${p.uws.serverCpuUsPerFrame ?? "-"} (× ${p.ratio ?? "-"} ws)`, `${p.ws.serverCpuUsPerFrame ?? "-"}`]));
  if (pairs.length > 0) rows.push(["flood pairs: median uWS ÷ ws", `× ${String(result.floodPairRatioMedian ?? "-")}`, ""]);
  both("closed early", (x) => String(x.closedEarly));
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(w[c]!)).join("  ")).join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  // Exit handlers (which kill the server children) also run when interrupted.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));
  const result = await runGatewayBench();
  console.log(gatewayTable(result));
  console.log(JSON.stringify(result.targets));
  const dir = join(ROOT, "bench", "results");
  const suffix = (result.options as GatewayBenchOptions).learners < 10_000 ? "-quick" : "";
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${new Date(String(result.startedAt)).toISOString().replace(/[:.]/g, "-").slice(0, 19)}Z-gateway${suffix}.json`), JSON.stringify(result, null, 2));
  await writeFile(join(dir, `latest-gateway${suffix}.json`), JSON.stringify(result, null, 2));
  process.exit(0);
}
