/**
 * `npm run soak [-- --minutes 30] [--rate <n>] [--users 50000] [--learners 1000]`: the service (src/main.ts,
 * all roles, SQLite in a temp dir) against a private nats-server, for `--minutes` at half the
 * measured saturation rate (or `--rate`), with the mix of soak-workload.ts over 100,000 aggregates
 * (50,000 users seeded as snapshots, one access record each granted through the command path), its
 * consumers running and 1,000 WebSocket learners connected. Prints a row every minute (RSS, heap
 * after the latest major GC, event-loop delay, fds, WAL, outbox, consumer lag, reply p99, CPU), then drains the service, reads
 * every stream to check each acknowledged event is there exactly once, and judges the run
 * (soak-verdict.ts). Writes bench/results/soak-<date>.json (rewritten every minute, so a killed run
 * keeps its rows), latest-soak.json and soak.svg. Exits 0 on a pass, 1 on a fail or an error, 130 on
 * a signal; its nats-server, service and temporary database are removed in every case.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { loadConfig } from "../src/config/index.js";
import { signToken } from "../src/gateway/index.js";
import { openDatabase } from "../src/persistence/index.js";
import { freePort, startNatsServer } from "../test/support/nats-server.js";
import { allocatorOf, SERVICE_NODE_FLAGS, serviceProcessEnv, startServiceProcess, type ServiceProcess } from "../test/support/service-process.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { Cleanup } from "./cleanup.js";
import { EventIdTally } from "./event-id-tally.js";
import { ClientFleet } from "./gateway-clients.js";
import { seedUserSnapshots } from "./seed-snapshots.js";
import { tallyStreams } from "./soak-audit.js";
import { SoakLoad } from "./soak-load.js";
import { soakSvg } from "./soak-plot.js";
import { cpuShare, minuteRow, residentMap, sampleService, waitDrained, type ResidentMap, type ServiceSample } from "./soak-sampler.js";
import { memoryWarmup, soakVerdict, soakWindows, windowP99, type SoakMinute } from "./soak-verdict.js";
import { SOAK_MIX, SoakWorkload, type SoakReply } from "./soak-workload.js";
import { fmt, table } from "./table.js";

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");
const SECRET = "soak-bench-secret-0123456789abcdef";
const SATURATION_MS = 15_000;
const SATURATION_INFLIGHT = 256;
const SETUP_INFLIGHT = 256;
const MAX_INFLIGHT = 8192;
const SAMPLE_MS = 5_000;
/**
 * The service's bounded caches, sized so they are full within the warm-up: memory that grows while a
 * cache fills is not a leak, and with the defaults the gateway's resume buffer (250,000 events) would
 * still be filling at minute 25 at this rate. Actors are not passivated for idleness during the run:
 * the live-actor count then stays at its bound instead of swinging with the mix, which would hide a slope.
 */
const GATEWAY_BUFFER_EVENTS = 50_000;

/** The command line. */
interface SoakOptions {
  minutes: number;
  rate: number | undefined;
  users: number;
  learners: number;
}

/** Parses `--minutes`, `--rate`, `--users`, `--learners`; throws a usage error naming the bad one. */
function soakOptions(argv: string[]): SoakOptions {
  const o: SoakOptions = { minutes: 30, rate: undefined, users: 50_000, learners: 1_000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, raw] = [argv[i]!, argv[i + 1]];
    const key = flag.replace(/^--/, "") as keyof SoakOptions;
    const v = Number(raw);
    if (!flag.startsWith("--") || !(key in o)) throw new Error(`unknown option ${flag}; use --minutes, --rate, --users, --learners`);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${flag} needs a whole number ≥ 1, got ${JSON.stringify(raw)}`);
    o[key] = v;
  }
  if (o.learners > o.users) throw new Error(`--learners (${o.learners}) cannot exceed --users (${o.users})`);
  return o;
}

const COLUMNS = ["min", "RSS MiB", "V8 heap", "native", "anon", "file", "shm", "writer heap", "query heap", "query GCs", "young", "old", "old free", "heap MiB", "loop p99 ms", "fds", "WAL MiB", "RESTARTs/blocked", "outbox", "lag sum", "lag max", "reply p99 ms", "sent", "ok", "failed", "frames", "actors", "gw buffer", "CPU% svc/nats/bench", "admit s", "txn p99", "ack p99", "svc p99", "mailbox p99", "prepare p99", "commit p99"];
const rowCells = (r: SoakMinute) => [r.minute, r.rssMb, r.heapCommittedMb ?? "", r.nativeMb ?? "", r.rssAnonMb ?? "", r.rssFileMb ?? "", r.rssShmemMb ?? "", r.writerHeapMb ?? "", r.queryHeapMb ?? "", r.queryCollections ?? "", r.youngMb ?? "", r.oldSpaceMb ?? "", r.oldFreeMb ?? "", r.heapMb, r.loopP99Ms, r.openFds, r.walMb, r.walRestarts ? `${r.walRestarts.run}/${r.walRestarts.blocked}` : "", r.outbox, r.lagSum, r.lagMax, r.replyP99Ms, r.sent, r.ok, r.failed, r.frames, r.actors ?? 0, r.buffered ?? 0, `${r.cpu.service}/${r.cpu.nats}/${r.cpu.bench}`, r.stages?.admissionWaitS ?? "", r.stages?.commitP99Ms ?? "", r.stages?.ackP99Ms ?? "", r.stages?.serviceReplyP99Ms ?? "", r.stages?.mailboxP99Ms ?? "", r.stages?.prepareP99Ms ?? "", r.stages?.commitWaitP99Ms ?? ""];
const WIDTHS = COLUMNS.map((h) => Math.max(h.length, 9));
const line = (cells: (string | number)[]) => cells.map((c, i) => (typeof c === "number" ? fmt(c) : c).padStart(WIDTHS[i]!)).join("  ");

const opts = soakOptions(process.argv.slice(2));
const cleanup = new Cleanup();
const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
const result: Record<string, unknown> = { startedAt: startedAt.toISOString(), options: opts, mix: Object.fromEntries(SOAK_MIX), complete: false };
const rows: SoakMinute[] = [];
const samples: ServiceSample[] = [];
const say = (s: string) => console.log(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function writeResults(final: boolean): Promise<void> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const json = `${JSON.stringify({ ...result, rows, samples }, (_k, v) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 100) / 100 : v), 2)}\n`;
  await writeFile(join(RESULTS_DIR, `soak-${stamp}.json`), json);
  if (!final) return;
  await writeFile(join(RESULTS_DIR, "latest-soak.json"), json);
  await writeFile(join(RESULTS_DIR, "soak.svg"), soakSvg(rows, `Nerve soak: ${rows.length} min at ${fmt(result.rate as number)} requests/s, ${new Date().toISOString().slice(0, 10)}`, memoryWarmup(rows)));
}

async function main(): Promise<boolean> {
  const load0 = loadavg();
  const aggregates = 2 * opts.users + 21;
  say(`Nerve soak: ${opts.minutes} min, ${fmt(aggregates)} aggregates, ${fmt(opts.learners)} WebSocket learners`);
  if (load0[0]! > 0.5) say(`note: load average ${load0.map((l) => l.toFixed(2)).join(" ")} before the run — other work shares these ${cpus().length} cores, so figures will be lower and noisier`);
  const nats = await startNatsServer();
  cleanup.add("nats-server", () => nats.stop());
  const db = await tempSqlitePath();
  cleanup.add("sqlite", () => db.cleanup());
  const workload = new SoakWorkload(opts.users);
  const tally = new EventIdTally(1 << 20);
  const onAck = (r: SoakReply) => r.events?.forEach((e) => tally.ack(e.event_id));
  const setup: Record<string, number> = {};
  result.setup = setup;

  // 1. Users as snapshots, straight into the file (before the service holds it).
  let t = performance.now();
  const seedDb = await openDatabase({ url: `sqlite:${db.path}` });
  await seedUserSnapshots(seedDb, workload.users).finally(() => seedDb.close());
  setup.seedUsersSeconds = (performance.now() - t) / 1000;
  say(`seeded ${fmt(opts.users)} users as snapshots in ${fmt(setup.seedUsersSeconds)} s`);

  // 2. The service, then the catalog, one access record per user, and one profile update per user.
  const port = await freePort();
  const serviceEnv = { NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, LOG_LEVEL: "warn", NERVE_HTTP_PORT: String(port), NERVE_JWT_SECRET: SECRET, NERVE_GATEWAY_BUFFER_EVENTS: String(GATEWAY_BUFFER_EVENTS), NERVE_ACTOR_IDLE_MS: String((opts.minutes + 60) * 60_000) };
  // Settings from the soak's own environment reach the service too (e.g. NERVE_SQLITE_WRITER=worker npm run soak): recorded with the run.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("NERVE_")));
  result.serviceSettings = { ...inherited, NERVE_GATEWAY_BUFFER_EVENTS: GATEWAY_BUFFER_EVENTS, NERVE_ACTOR_IDLE_MS: serviceEnv.NERVE_ACTOR_IDLE_MS };
  // Where the service's SQLite commits run (NERVE_SQLITE_WRITER, `auto` resolved by this machine's cores, as the service resolves it).
  result.sqliteWriter = loadConfig(inherited.NERVE_SQLITE_WRITER ? { NERVE_SQLITE_WRITER: inherited.NERVE_SQLITE_WRITER } : {}).NERVE_SQLITE_WRITER;
  result.serviceNodeFlags = SERVICE_NODE_FLAGS;
  result.serviceEnv = serviceProcessEnv();
  const service: ServiceProcess = await startServiceProcess({ env: serviceEnv, readyTimeoutMs: 60_000 });
  cleanup.add("service", () => service.stop());
  result.allocator = allocatorOf(service.pid);
  say(`service allocator: ${result.allocator as string}${result.allocator === "jemalloc" ? "" : " (no libjemalloc2 on this machine: the deployed service preloads it)"}`);
  say(`service: SQLite engine ${result.sqliteWriter as string}, gateway resume buffer ${fmt(GATEWAY_BUFFER_EVENTS)} events, no idle passivation of actors (so the bounded caches are full within the warm-up)`);
  const nc = await connect({ servers: nats.url, name: "soak-load", noAsyncTraces: true });
  cleanup.add("nats connection", () => nc.close());
  await workload.createCatalog(nc, onAck);
  const progress = (what: string) => (n: number) => say(`  ${what}: ${fmt(n)} / ${fmt(opts.users)}`);
  setup.grantSeconds = await workload.grantAll(nc, SETUP_INFLIGHT, onAck, progress("granted"));
  say(`granted ${fmt(opts.users)} access records in ${fmt(setup.grantSeconds)} s`);
  setup.touchSeconds = await workload.touchUsers(nc, SETUP_INFLIGHT, onAck, progress("profiles updated"));
  say(`updated ${fmt(opts.users)} profiles (every user live) in ${fmt(setup.touchSeconds)} s`);
  const drain = async (what: string, ms: number) => {
    t = performance.now();
    const drained = await waitDrained(port, db.path, Date.now() + ms, (s) => say(`  waiting for ${what}: outbox ${fmt(s.outboxPending)}, consumer lag ${fmt(s.lagSum)} (worst ${fmt(s.lagMax)})`));
    const seconds = (performance.now() - t) / 1000;
    say(`${what}: ${drained ? "drained" : "NOT drained"} after ${fmt(seconds)} s`);
    return { drained, seconds };
  };
  setup.drainSeconds = (await drain("setup's events", 10 * 60_000)).seconds;

  // 3. The learners' WebSockets.
  const exp = Math.floor(Date.now() / 1000) + opts.minutes * 60 + 3 * 3600;
  const tokens = await Promise.all(workload.learners(opts.learners).map((u) => signToken(SECRET, u, exp)));
  const fleet = new ClientFleet(port, tokens, () => {});
  cleanup.add("learners", () => fleet.closeAll());
  setup.connectSeconds = await fleet.connectAll(64);
  fleet.mode = "count";
  say(`connected ${fmt(opts.learners)} learners in ${fmt(setup.connectSeconds)} s`);

  // 4. Saturation: a closed-loop burst of the mix; the soak runs at half of it.
  const load = new SoakLoad(nc, workload, tally);
  const sat = await load.closedLoop(SATURATION_INFLIGHT, SATURATION_MS);
  load.takeMinute();
  const rate = opts.rate ?? Math.max(1, Math.round(sat.okPerSecond / 2));
  result.saturation = { ...sat, inflight: SATURATION_INFLIGHT };
  result.rate = rate;
  say(`saturation: ${fmt(sat.okPerSecond)} answered/s with ${SATURATION_INFLIGHT} in flight (${fmt(sat.failed)} failed) → soak at ${fmt(rate)}/s${opts.rate ? " (--rate)" : ""}`);
  await drain("the burst's events", 5 * 60_000);

  // 5. The open loop, one row a minute.
  const cpu = cpuShare(service.pid, nats.pid);
  const latency: Float64Array[] = [];
  const failedByCode: Record<string, number> = {};
  say(`\n== Soak: ${fmt(rate)} requests/s open loop (latency from the intended send time), sampled every ${SAMPLE_MS / 1000} s; RSS: the minute's lowest sample; heap: right after the latest major GC`);
  say(line(COLUMNS));
  say(WIDTHS.map((w) => "-".repeat(w)).join("  "));
  const open = load.openLoop(rate, MAX_INFLIGHT);
  cleanup.add("open loop", () => open.stop());
  const t0 = Date.now();
  let frames = fleet.frames;
  for (let minute = 1; minute <= opts.minutes; minute++) {
    const minuteSamples: ServiceSample[] = [];
    for (let k = 1; k <= 60_000 / SAMPLE_MS; k++) {
      await sleep(t0 + (minute - 1) * 60_000 + k * SAMPLE_MS - Date.now());
      if (load.error) throw load.error;
      if (service.exited) throw new Error(`the service exited:\n${service.output()}`);
      minuteSamples.push(await sampleService(port, db.path, Date.now() - t0));
    }
    samples.push(...minuteSamples);
    const m = load.takeMinute();
    for (const [code, n] of Object.entries(m.failedByCode)) failedByCode[code] = (failedByCode[code] ?? 0) + n;
    latency.push(m.samples);
    const row = minuteRow(minute, minuteSamples, m, fleet.frames - frames, cpu(), samples.at(-minuteSamples.length - 1));
    frames = fleet.frames;
    rows.push(row);
    if (minute === 1) result.heapSource = minuteSamples.at(-1)!.heapAfterGcBytes > 0 ? "after the latest major GC" : "lowest 5-second sample of the minute (the service has no nerve_heap_used_after_major_gc_bytes)";
    // Resident memory by mapping after the warm-up, at half time and at the end: where native memory grew.
    if (minute === Math.min(10, opts.minutes) || minute === Math.ceil(opts.minutes / 2) || minute === opts.minutes) {
      const map = await residentMap(service.pid);
      if (map) ((result.residentMaps ??= {}) as Record<string, ResidentMap>)[String(minute)] = map;
    }
    say(line(rowCells(row)) + (open.behind > 0 ? `  (${fmt(open.behind)} behind schedule)` : ""));
    await writeResults(false);
  }
  await open.stop();
  result.failedByCode = failedByCode;
  result.totals = { ...load.totals, wsClosedEarly: fleet.closedEarly, deadLetters: samples.at(-1)?.deadLetters ?? 0 };

  // 6. Nothing lost: drain, then read every stream.
  const end = await drain("the soak's events", 15 * 60_000);
  t = performance.now();
  const read = await tallyStreams(nc, tally, (s, n, of) => say(`  reading ${s}: ${fmt(n)} / ${fmt(of)}`));
  const audit = { ...tally.summary(), streams: read, readSeconds: (performance.now() - t) / 1000, drained: end.drained, drainSeconds: end.seconds };
  result.audit = audit;
  const { window } = soakWindows(rows.length);
  const p99 = { first: windowP99(latency, 1, window), last: windowP99(latency, rows.length - window + 1, rows.length), windowMinutes: window };
  const verdict = soakVerdict(rows, p99, audit);
  Object.assign(result, { p99, verdict, complete: true, seconds: (Date.now() - startedAt.getTime()) / 1000 });
  result.machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model, totalMemoryGB: Math.round(totalmem() / 2 ** 30), node: process.version, natsServer: nc.info?.version, loadAverageBefore: load0, loadAverageAfter: loadavg() };
  say(table("Soak verdict", ["check", "value", "limit", "pass"], verdict.checks.map((c) => [c.name, `${fmt(c.value)}${c.stdError ? ` ± ${fmt(c.stdError)}` : ""} ${c.unit}`.trim(), `${c.unit === "" ? "=" : "≤"} ${fmt(c.limit)} ${c.unit}`.trim(), c.reportedOnly ? "reported" : c.pass === null ? "not judged (too short)" : c.pass ? "yes" : "NO"])));
  say(`memory judged after minute ${memoryWarmup(rows)} (warm-up ${soakWindows(rows.length).warmup} min, longer while live actors or the gateway's resume buffer still grew by ≥ 1 %/min towards their bounds)`);
  say(`reply p99: first ${window} min ${fmt(p99.first)} ms, last ${window} min ${fmt(p99.last)} ms; acknowledged events ${fmt(audit.acknowledged)}, read from the streams ${fmt(audit.seen)} distinct; failed ${JSON.stringify(failedByCode)}; WebSockets closed early ${fleet.closedEarly}; dead letters ${fmt(samples.at(-1)?.deadLetters ?? 0)}`);
  say(`${verdict.pass ? "PASS" : "FAIL"}${verdict.judgedAll ? "" : " (some checks not judged: the run is too short)"}; load average before/after ${load0[0]!.toFixed(2)}/${loadavg()[0]!.toFixed(2)}; run took ${fmt(result.seconds as number)} s`);
  await writeResults(true);
  say(`results: bench/results/soak-${stamp}.json, latest-soak.json, soak.svg`);
  return verdict.pass;
}

let finishing: Promise<never> | undefined;
function finish(code: number, error?: unknown): Promise<never> {
  finishing ??= (async () => {
    if (error) console.error(`\nsoak failed: ${(error as Error)?.stack ?? String(error)}`);
    if (code !== 0 && !result.complete) {
      result.error = String((error as Error)?.message ?? error);
      await writeResults(false).catch((err) => console.error(`writing results failed: ${String(err)}`));
    }
    await cleanup.run();
    process.exit(code);
  })();
  return finishing;
}

const watchdog = setTimeout(() => void finish(2, new Error("the soak exceeded its time budget")), (opts.minutes + 40) * 60_000);
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void finish(130, new Error(`interrupted by ${sig}`)));
main().then(
  (pass) => {
    clearTimeout(watchdog);
    return finish(pass ? 0 : 1);
  },
  (err) => {
    clearTimeout(watchdog);
    return finish(1, err);
  },
);
