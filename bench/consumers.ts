/**
 * The consumer-side bench (`node --import tsx bench/consumers.ts`, or `runConsumerBench()` from run.ts),
 * in one run against one private nats-server:
 *  1. seeds EVENTS_COURSES with N contract-valid course events (CourseCreated + CourseUpdated);
 *  2. raw JetStream: a durable pull consumer reading all N with `consume()` and acking each (the
 *     ceiling), and the same plus the runner's decoding and the projection's validation (no database);
 *  3. the real `catalog` projection (ConsumerManager → ConsumerRunner → EventHandler, inbox, SQLite)
 *     from the first event until its lag is 0, with its transactions' average batch;
 *  4. `manager.replay("catalog")` over the same data;
 *  5. the same for `search` (FTS5).
 * `BENCH_QUICK=1` (or `{ quick: true }`) runs a tiny version; `BENCH_CPU_PROFILE=<file>` writes a V8 CPU
 * profile of step 3 (that run does not become `latest`). Alone it writes bench/results/ and exits
 * 0 on success, 1 on an error, 2 past its time budget, 130 on a signal; its nats-server and temporary
 * database are removed in every case.
 */
import { cpus, loadavg, totalmem } from "node:os";
import { pathToFileURL } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { EnvelopeBase, Streams, decodeMsgPack, upcasters } from "../contracts/index.js";
import { consumerEntities } from "../src/consumers/index.js";
import { createLogger } from "../src/log/index.js";
import { openDatabase } from "../src/persistence/index.js";
import { SqliteWriteWorker } from "../src/persistence/sqlite-write-worker.js";
import { catalog, readModelEntities, search, typedEvent } from "../src/projections/index.js";
import { startNatsServer } from "../test/support/nats-server.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { writeResultsFile } from "./results-file.js";
import { Cleanup } from "./cleanup.js";
import { profiled } from "./cpu-profile.js";
import { ProjectionUnderTest, type ProjectionRun } from "./projection-run.js";
import { benchRawConsume, type RawConsumeResult } from "./raw-consume.js";
import { COURSE_STREAM, seedCourseEvents, type SeedResult } from "./seed-course-events.js";
import { fmt } from "./table.js";
import { cpuMeter, type CpuSpent } from "./thread-cpu.js";

/** CPU per event of one phase: the bench process (all its threads: the runner, the write worker, SQLite's pool), its main thread, nats-server. */
export interface PhaseCpu {
  processUs: number;
  mainThreadUs: number | undefined;
  natsUs: number | undefined;
  /** Process + nats-server. */
  machineUs: number | undefined;
  /** Cores busy on average during the phase (machine CPU ÷ wall time). */
  cores: number | undefined;
}

/** Sizes of a run. */
export interface ConsumerBenchOptions {
  /** A tiny run for smoke tests (`BENCH_QUICK=1` alone). */
  quick?: boolean;
  /** Prints progress and the table (default true). */
  print?: boolean;
  /** Writes a V8 CPU profile of the catalog projection's run from the start to this file (`BENCH_CPU_PROFILE` alone). */
  cpuProfile?: string;
}

/** Everything one run measured. */
export interface ConsumerBenchResult {
  startedAt: string;
  quick: boolean;
  /** Where the catalog run's CPU profile went, when asked for (its figures are then slower than usual). */
  cpuProfile?: string;
  events: number;
  seed: SeedResult;
  rawConsumeAck: RawConsumeResult;
  decodeValidateAck: RawConsumeResult & { ratioToRaw: number };
  /** CPU per event of each phase, by phase name (raw, decode, catalog, catalogReplay, search). */
  cpu: Record<string, PhaseCpu>;
  /** Where the write-only projections' batches ran: the SQLite write worker (the service's default) or the main connection (`NERVE_SQLITE_WRITER=main`). */
  writer: "worker" | "main";
  catalog: ProjectionRun & { ratioToRaw: number };
  catalogReplay: ProjectionRun & { ratioToRaw: number };
  search?: ProjectionRun & { ratioToRaw: number };
  checks: Record<string, number>;
  machine: Record<string, unknown>;
  seconds: number;
}

const SIZES = { full: { events: 50_000, budgetMs: 120_000 }, quick: { events: 2_000, budgetMs: 60_000 } } as const;
const PUBLISH_WINDOW = 256;
const FILTER = Streams[COURSE_STREAM].subjects;

// Resources of runs in progress, released by the stand-alone entry point on a signal or past the budget.
const running = new Set<Cleanup>();

/** Runs the consumer bench; resolves with its figures (also printed unless `print: false`). */
export async function runConsumerBench(opts: ConsumerBenchOptions = {}): Promise<ConsumerBenchResult> {
  const quick = opts.quick ?? (process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true");
  const print = opts.print === false ? () => {} : (line: string) => console.log(line);
  const size = quick ? SIZES.quick : SIZES.full;
  const began = Date.now();
  const deadline = began + size.budgetMs;
  const startedAt = new Date(began).toISOString();
  const loadBefore = loadavg();
  const cleanup = new Cleanup();
  running.add(cleanup);
  try {
    print(`Nerve consumer bench: ${fmt(size.events)} course events${quick ? " (quick: tiny sizes, figures are not meaningful)" : ""}`);
    if (loadBefore[0]! > 0.5) print(`note: load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")} before the run — other work shares these ${cpus().length} cores`);
    const nats = await startNatsServer();
    cleanup.add("nats-server", () => nats.stop());
    const nc = await connect({ servers: nats.url, name: "bench-consumers", noAsyncTraces: true });
    cleanup.add("nats connection", () => nc.close());
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const sqlite = await tempSqlitePath();
    cleanup.add("sqlite", () => sqlite.cleanup());

    // 1. Seed.
    const seed = await seedCourseEvents(nc, js, { events: size.events, window: PUBLISH_WINDOW, deadline });
    print(`seeded ${fmt(seed.events)} events (${fmt(seed.courses)} courses, ${fmt(seed.bytesPerEvent)} B each) in ${fmt(seed.seconds)} s: ${fmt(seed.perSecond)}/s (window ${PUBLISH_WINDOW})`);

    // 2. Raw JetStream, bare and with the runner's and projection's per-event CPU work.
    const cpu: Record<string, PhaseCpu> = {};
    const metered = async <T extends { seconds: number }>(phase: string, events: number, run: () => Promise<T>): Promise<T> => {
      const meter = cpuMeter(nats.pid);
      const out = await run();
      cpu[phase] = phaseCpu(meter(), events, out.seconds);
      return out;
    };
    const rawOpts = { stream: COURSE_STREAM, filter: FILTER, messages: size.events, deadline };
    const raw = await metered("raw", size.events, () => benchRawConsume(nc, js, jsm, { ...rawOpts, durable: "bench-raw" }));
    let invalid = 0;
    const decoded = await metered("decode", size.events, () => benchRawConsume(nc, js, jsm, {
      ...rawOpts,
      durable: "bench-decode",
      work: (m) => {
        const d = decodeMsgPack(m.data);
        const e = d.ok ? EnvelopeBase.safeParse(d.value) : undefined;
        if (!e?.success) invalid++;
        else typedEvent(upcasters.upcast(e.data));
      },
    }));
    if (invalid > 0) throw new Error(`${invalid} seeded events failed to decode`);
    const ratio = (r: { perSecond: number }) => r.perSecond / raw.perSecond;

    // 3–5. The real projections on one SQLite file, opened as the service opens it.
    const db = await openDatabase({ url: `sqlite:${sqlite.path}`, sqliteSynchronous: "FULL", entities: [...consumerEntities, ...readModelEntities] });
    cleanup.add("database", () => db.close());
    // As the service runs them: the batches of a projection that only writes go to the write worker.
    const writer = process.env.NERVE_SQLITE_WRITER === "main" ? "main" : "worker";
    let workerFailure: Error | undefined;
    const batchWriter = writer === "worker" ? new SqliteWriteWorker(db, (err) => (workerFailure ??= err)) : undefined;
    if (batchWriter) cleanup.add("write worker", () => batchWriter.close());
    const deps = { db, js, jsm, logger: createLogger("silent"), stream: COURSE_STREAM, batchWriter };
    const count = async (sql: string) => Number(((await db.execute(sql, [], "get")) as { n: number }).n);

    const cat = new ProjectionUnderTest(catalog(), deps);
    cleanup.add("catalog runner", () => cat.stop());
    const catalogRun = await metered("catalog", size.events, () => profiled(opts.cpuProfile, () => cat.fromStart(size.events, deadline)));
    const replayStarted = Date.now();
    let lastPrint = 0;
    const catalogReplay = await metered("catalogReplay", size.events, () => cat.replay(size.events, deadline, (p) => {
      const now = Date.now();
      if (now - lastPrint < 1000 && p.done < p.total) return;
      lastPrint = now;
      print(`  replay catalog: ${fmt(p.done).padStart(fmt(p.total).length)} / ${fmt(p.total)} (${((100 * p.done) / Math.max(1, p.total)).toFixed(1)}%) after ${((now - replayStarted) / 1000).toFixed(1)} s`);
    }));
    await cat.stop();
    const checks: Record<string, number> = {
      catalogRows: await count("select count(*) as n from catalog_courses"),
      catalogRowsAtVersion2: await count("select count(*) as n from catalog_courses where version = 2"),
      catalogInbox: await count("select count(*) as n from consumer_inbox where consumer = 'catalog'"),
    };

    const srch = new ProjectionUnderTest(search(), deps);
    cleanup.add("search runner", () => srch.stop());
    const searchRun = await metered("search", size.events, () => srch.fromStart(size.events, deadline));
    await srch.stop();
    checks.searchDocuments = await count("select count(*) as n from search_documents where version = 2");
    checks.searchFtsRows = await count("select count(*) as n from search_fts");
    checks.deadLetters = await count("select count(*) as n from consumer_dead_letters");
    const expected = { catalogRows: seed.courses, catalogRowsAtVersion2: seed.courses, catalogInbox: seed.events, searchDocuments: seed.courses, searchFtsRows: seed.courses, deadLetters: 0 };
    const wrong = Object.entries(expected).filter(([k, v]) => checks[k] !== v);
    if (wrong.length > 0) throw new Error(`read models are wrong: ${wrong.map(([k, v]) => `${k} ${checks[k]} ≠ ${v}`).join("; ")}`);

    if (workerFailure) throw new Error(`the SQLite write worker failed: ${workerFailure.message}`);
    const sqliteVersion = ((await db.execute("select sqlite_version() as v", [], "get")) as { v: string }).v;
    const result: ConsumerBenchResult = {
      startedAt,
      quick,
      ...(opts.cpuProfile ? { cpuProfile: opts.cpuProfile } : {}),
      events: size.events,
      seed,
      rawConsumeAck: raw,
      decodeValidateAck: { ...decoded, ratioToRaw: ratio(decoded) },
      cpu,
      writer,
      catalog: { ...catalogRun, ratioToRaw: ratio(catalogRun) },
      catalogReplay: { ...catalogReplay, ratioToRaw: ratio(catalogReplay) },
      search: { ...searchRun, ratioToRaw: ratio(searchRun) },
      checks,
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "unknown",
        totalMemoryGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        natsServer: nc.info?.version ?? "unknown",
        sqlite: sqliteVersion,
        sqliteSynchronous: "FULL",
        loadAverageBefore: loadBefore,
        loadAverageAfter: loadavg(),
      },
      seconds: (Date.now() - began) / 1000,
    };
    print(consumerTable(result));
    return result;
  } finally {
    await cleanup.run();
    running.delete(cleanup);
  }
}

/** The run as a plain aligned table, with the machine it ran on. */
export function consumerTable(r: ConsumerBenchResult): string {
  type Row = (string | number | undefined)[];
  const withCpu = (phase: string, row: Row): Row => {
    const c = r.cpu?.[phase];
    return [...row, c?.processUs, c?.mainThreadUs, c?.natsUs, c?.machineUs, c?.cores];
  };
  const rows: Row[] = [
    withCpu("raw", ["raw JetStream consume() + ack", r.rawConsumeAck.messages, r.rawConsumeAck.seconds, r.rawConsumeAck.perSecond, 1, undefined]),
    withCpu("decode", ["  + decode + validate (no database)", r.decodeValidateAck.messages, r.decodeValidateAck.seconds, r.decodeValidateAck.perSecond, r.decodeValidateAck.ratioToRaw, undefined]),
    withCpu("catalog", ["catalog projection, from the start", r.catalog.events, r.catalog.seconds, r.catalog.perSecond, r.catalog.ratioToRaw, r.catalog.averageBatch]),
    withCpu("catalogReplay", ['manager.replay("catalog")', r.catalogReplay.events, r.catalogReplay.seconds, r.catalogReplay.perSecond, r.catalogReplay.ratioToRaw, r.catalogReplay.averageBatch]),
  ];
  if (r.search) rows.push(withCpu("search", ["search projection (FTS5), from the start", r.search.events, r.search.seconds, r.search.perSecond, r.search.ratioToRaw, r.search.averageBatch]));
  const header = ["phase", "events", "seconds", "events/s", "vs raw", "avg batch", "process µs/ev", "main thread µs/ev", "nats-server µs/ev", "machine µs/ev", "cores busy"];
  const cells = rows.map((row) => row.map((c, i) => (c === undefined ? "-" : typeof c === "number" ? (i === 4 || i === 10 ? c.toFixed(2) : fmt(c)) : c)));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join("  ");
  const m = r.machine;
  return [
    "",
    `== Consumers: ${fmt(r.events)} events on ${COURSE_STREAM}, SQLite synchronous FULL (WAL), batches on the ${r.writer === "worker" ? "write worker" : "main connection"}, consumer max_ack_pending 1000, pull batch 256`,
    line(header),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...cells.map(line),
    `seed: ${fmt(r.seed.perSecond)} events/s published (window ${PUBLISH_WINDOW}); transactions: catalog ${fmt(r.catalog.transactions)}, replay ${fmt(r.catalogReplay.transactions)}${r.search ? `, search ${fmt(r.search.transactions)}` : ""}`,
    `replay time includes replay()'s own 100 ms lag polling; checks: ${Object.entries(r.checks).map(([k, v]) => `${k}=${fmt(v)}`).join(", ")}`,
    `machine: ${m.cpus} cpus (${m.cpuModel}), node ${m.node}, nats-server ${m.natsServer}, SQLite ${m.sqlite}; run took ${r.seconds.toFixed(1)} s`,
  ].join("\n");
}

/** CPU per event of a phase from a meter's reading. */
function phaseCpu(spent: CpuSpent, events: number, seconds: number): PhaseCpu {
  const per = (ms: number | undefined) => (ms === undefined ? undefined : Math.round((ms * 1000) / events * 10) / 10);
  const machineMs = spent.serverMs === undefined ? undefined : spent.processMs + spent.serverMs;
  return {
    processUs: per(spent.processMs)!,
    mainThreadUs: per(spent.mainThreadMs),
    natsUs: per(spent.serverMs),
    machineUs: per(machineMs),
    cores: machineMs === undefined ? undefined : Math.round((machineMs / 1000 / seconds) * 100) / 100,
  };
}

async function writeResults(result: ConsumerBenchResult): Promise<string> {
  const suffix = result.quick ? "consumers-quick" : "consumers";
  // A profiled run is slower than a plain one, so it never becomes the latest figures.
  const file = await writeResultsFile(result, suffix, !result.cpuProfile);
  return result.cpuProfile ? `${file} (profiled run; latest untouched)` : `${file} and latest-${suffix}.json`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const abort = async (code: number, why: string): Promise<never> => {
    console.error(`\nconsumer bench failed: ${why}`);
    await Promise.allSettled([...running].map((c) => c.run()));
    process.exit(code);
  };
  const watchdog = setTimeout(() => void abort(2, "past its time budget"), 150_000);
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void abort(130, `interrupted by ${sig}`));
  try {
    const result = await runConsumerBench({ cpuProfile: process.env.BENCH_CPU_PROFILE || undefined });
    console.log(`\nresults: ${await writeResults(result)}`);
    clearTimeout(watchdog);
    process.exit(0);
  } catch (err) {
    await abort(1, String((err as Error)?.stack ?? err));
  }
}
