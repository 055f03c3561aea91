/**
 * `npm run bench:cluster`: several Nerve instances on one PostgreSQL database (issue #11, Performance).
 * One private nats-server (with the partition mapping of deploy/nats/partition-mapping.conf, so
 * commands reach their owners directly) and one fresh PostgreSQL database per run; every instance is a
 * service process of its own (bench/cluster-node.ts: what `npm start` runs, loaded ahead as a standby
 * so that adding an instance takes Nerve's start, not Node's and tsx's).
 *
 *   0. Raw JetStream publish on the same server: the NATS baseline.
 *   1. Durable commands/s and reply p50/p99 with 1, 2 and 3 instances (UpdateUserProfile over the users,
 *      a fixed number in flight, a fixed time per point), machine CPU per command (every Nerve process
 *      + nats-server + this process, from /proc over the measured window; PostgreSQL's backends for the
 *      bench's database beside it) and the rate two cores allow at that cost. Full runs add, right after
 *      the mapped 2-instance point, 2 instances without the server mapping (forwarding what they do not
 *      own), on a nats-server and a database of their own.
 *   2. Fencing: one instance on PostgreSQL with leases and fence checks vs without (startNerve's
 *      `overrides.ownership = "sole"`, through bench/cluster-node.ts); while startNerve lacks that hook,
 *      vs the same instance on SQLite (which changes the database too). Pairs alternate, fresh instances.
 *   3. Hand-offs with 2 instances under a light keyed load (retried with its Idempotency-Key): per run, the
 *      per-partition gap of a graceful leave (SIGTERM) and of a join (from the partition's last
 *      acknowledgement to its new owner's first, by the Nerve-Instance reply header), and the takeover
 *      after kill -9 (until the leases show every partition held by live instances). Runs before 2; the
 *      survivor of the last run is measured as one more point of section 1.
 *   4. Roles: commands in one process, consumers + gateway in another, vs all-in-one — when
 *      src/app/nerve.ts reads NERVE_ROLES; otherwise "not measured".
 *
 * `--only handoff` (`npm run bench:cluster -- --only handoff`) runs section 3 alone, on two instances
 * (about two minutes), and writes `latest-cluster-handoff.json` instead.
 *
 * Prints a table per section and writes bench/results/ (`latest-cluster.json`). `BENCH_QUICK=1` is a
 * smoke version (about a minute on a quiet machine; `latest-cluster-quick.json`) whose figures mean
 * nothing: 1 s points, standbys loading while it measures, the next instance joining during a takeover.
 * Exits 0 on success, 1 on an error, a failed steady-state command or a wrong answer, 2 past its time
 * budget, 130 on a signal; its processes, nats-servers and databases are removed in every case. Needs
 * PostgreSQL at postgres://postgres@127.0.0.1:5432 (NERVE_TEST_PG overrides it).
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { PARTITIONS, PARTITION_GROUP, clusterEntities, leaseName, partitionOf, placeOf } from "../src/cluster/index.js";
import { openDatabase, type Database } from "../src/persistence/index.js";
import { startNatsServer, type NatsServerHandle } from "../test/support/nats-server.js";
import { PG_ADMIN_URL, postgresAvailable, tempPostgres } from "../test/support/postgres.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { writeResultsFile } from "./results-file.js";
import { Cleanup, runToEnd } from "./cleanup.js";
import { failures, type CommandLoadResult } from "./command-load.js";
import { cpuWindow, scrapeMetrics, spawnStandby, type NodeProcess, type Standby } from "./cluster-procs.js";
import { keyedLoad, type Ack, type KeyedLoad } from "./cluster-load.js";
import { fencingTable, handoffTable, pointCpuTable, pointTable, rolesTable, type HandoffRun, type Point } from "./cluster-report.js";
import { registerUsers, userIds } from "./durable-commands.js";
import { startLoadClient, type LoadClient } from "./load-client.js";
import { benchRawPublish } from "./raw-publish.js";
import { percentile } from "./percentiles.js";
import { table } from "./table.js";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
const MAPPING = join(REPO, "deploy", "nats", "partition-mapping.conf");
/** Issue #11: fencing and routing add at most this much machine CPU per command. */
const FENCING_TARGET = 1.15;

const quick = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true";
/** `--only handoff`: the hand-off runs alone (section 3), after just what they need. */
const onlyArg = process.argv.indexOf("--only");
const only = onlyArg >= 0 ? process.argv[onlyArg + 1] : undefined;
if (only !== undefined && only !== "handoff") {
  console.error(`--only takes "handoff", not ${JSON.stringify(only)}`);
  process.exit(1);
}
const handoffOnly = only === "handoff";
const plan = {
  quick,
  handoffOnly,
  /** Hard bound of the whole run; past it the bench cleans up and exits 2. */
  budgetMs: quick ? 180_000 : 480_000,
  users: quick ? 200 : 1_000,
  /** Requests in flight of every steady-state point. */
  inflight: 256,
  /** Measured time of one point, after `warmupMs` of the same load. */
  pointMs: quick ? 1_000 : 8_000,
  warmupMs: quick ? 300 : 2_000,
  rawMessages: quick ? 2_000 : 20_000,
  handoffRuns: quick ? 3 : 5,
  /** The hand-offs' keyed load: commands started per second, most in flight. */
  light: { rate: quick ? 400 : 1_000, maxInFlight: 64 },
  /** Fenced / unfenced pairs, alternating. */
  fencingPairs: quick ? 1 : 2,
  forwardPoint: !quick && !handoffOnly,
  /** Load standbys only while nothing is measured (else they load meanwhile). */
  cleanStandbyBoot: !quick,
  /** Before a point, wait until the users' stream's consumers have caught up (after a kill -9, a consumer that had deliveries out resumes once they are due again: up to ack_wait, 30 s). */
  waitForConsumers: !quick,
};

const cleanup = new Cleanup();
const results: Record<string, unknown> = { startedAt: new Date().toISOString(), quick, plan };
const notes: string[] = [];
results.notes = notes;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const note = (s: string) => {
  notes.push(s);
  console.log(`note: ${s}`);
};

/** Waits until `check` holds; throws naming `what` after `ms`. */
async function until(what: string, check: () => Promise<boolean> | boolean, ms: number, every = 50): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await sleep(every);
  }
}

/** One NATS server the bench drives, with its own client connections. */
interface Server {
  name: string;
  nats: NatsServerHandle;
  client: NatsConnection;
  load: LoadClient;
  /** Events the stream must hold once every acknowledged command's event is published. */
  expected: number;
  /** The PostgreSQL database its instances share (set once the first instance has made the schema). */
  db?: Database;
  /** Closes the bench's connections to it. */
  close(): Promise<void>;
}

/** Connects the bench to a nats-server: a client and a load generator, each closed at cleanup if not before. */
async function server(name: string, nats: NatsServerHandle): Promise<Server> {
  const client = await connect({ servers: nats.url, name: "bench-cluster", noAsyncTraces: true });
  const closeClient = cleanup.add(`${name} client`, () => client.close());
  const load = await startLoadClient(nats.url, "main");
  const closeLoad = cleanup.add(`${name} load client`, () => load.close());
  return {
    name,
    nats,
    client,
    load,
    expected: 0,
    async close() {
      await closeLoad();
      await closeClient();
    },
  };
}

/** The ready standbys: loaded service processes, started by {@link Pool.start}. */
class Pool {
  readonly #ready: Standby[] = [];
  #n = 0;

  /** Spawns standbys until `n` are waiting, and waits until the first `n` are loaded. */
  async ensure(n: number): Promise<void> {
    while (this.#ready.length < n) this.#ready.push(this.#spawn());
    await Promise.all(this.#ready.slice(0, n).map((s) => s.loaded));
  }

  /** Spawns `n` more without waiting for them (their boot overlaps whatever comes next). */
  spawnInBackground(n: number): void {
    for (let i = 0; i < n; i++) this.#ready.push(this.#spawn());
  }

  /** Starts Nerve in a loaded standby (spawning one if none waits). */
  async start(id: string, env: Record<string, string>): Promise<NodeProcess> {
    if (this.#ready.length === 0) await this.ensure(1);
    const s = this.#ready.shift()!;
    const t = performance.now();
    await s.loaded;
    const waited = performance.now() - t;
    const node = await s.activate(id, env);
    console.log(`  ${elapsed()} ${id} started${waited > 200 ? ` (waited ${(waited / 1000).toFixed(1)} s for its process to load)` : ""}: Nerve's start ${Math.round(node.startMs)} ms`);
    cleanup.add(`instance ${id}`, () => node.kill9());
    return node;
  }

  #spawn(): Standby {
    const s = spawnStandby();
    this.#n++;
    cleanup.add(`standby ${this.#n}`, () => s.kill());
    return s;
  }
}

const pool = new Pool();
/** The partitions some bench user is in: only they can show a gap. */
const partitionsWithUsers = new Set<number>();
let db: Database | undefined;

/** Who holds which partition now, by the database (live leases only). */
async function owners(d: Database = db!): Promise<Map<number, string>> {
  const rows = await d.execute<{ lease_key: string; owner: string }[]>(
    "select lease_key, owner from nerve_leases where lease_key like 'partitions/%' and owner is not null and lease_until > now()",
    [],
    "all",
  );
  return new Map(rows.map((r) => [Number(r.lease_key.slice("partitions/".length)), r.owner]));
}

/** Waits until every partition is held where rendezvous places it among `ids` (the hand-offs a join or a leave causes are over). */
async function spread(ids: string[], d: Database = db!, ms = 30_000): Promise<void> {
  const place = Array.from({ length: PARTITIONS }, (_, p) => placeOf(leaseName(PARTITION_GROUP, String(p)), ids));
  await until(`the partitions sit where rendezvous places them among ${ids.join(", ")}`, async () => {
    const o = await owners(d);
    return o.size === PARTITIONS && place.every((owner, p) => o.get(p) === owner);
  }, ms, 50);
}

/** Polls the leases from `since` until every partition is held by `ids` alone; resolves with the ms since `since`. */
async function timeUntilHeldBy(ids: string[], since: number, ms = 30_000): Promise<number> {
  await until(`every partition is held by ${ids.join(", ")}`, async () => {
    const o = await owners();
    return o.size === PARTITIONS && [...o.values()].every((v) => ids.includes(v));
  }, ms, 25);
  return performance.now() - since;
}

const began = Date.now();
/** Seconds since the bench began, for the progress lines. */
const elapsed = () => `[${((Date.now() - began) / 1000).toFixed(0).padStart(3)} s]`;

/** PostgreSQL backends serving the bench's database, but the bench's own. */
async function pgBackends(d: Database | undefined): Promise<Record<string, number>> {
  if (!d) return {};
  const rows = await d.execute<{ pid: number }[]>("select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()", [], "all");
  return Object.fromEntries(rows.map((r) => [`pg:${r.pid}`, Number(r.pid)]));
}

/** Waits until the users' stream holds every acknowledged event, the outbox is empty and the stream's consumers have caught up. */
async function drained(s: Server, sqlite = false, ms = 60_000): Promise<boolean> {
  const jsm = await jetstreamManager(s.client);
  try {
    await until("the previous load is published and consumed", async () => {
      const info = await jsm.streams.info("EVENTS_USERS");
      if (info.state.messages < s.expected) return false;
      if (!sqlite && s.db) {
        const row = await s.db.execute<{ n: string | number }>("select count(*) as n from nerve_outbox", [], "get");
        if (Number(row.n) > 0) return false;
      }
      // A quick run does not wait for consumers (after a kill -9 the dead instance's, if they had deliveries out, resume only once those are due again: up to ack_wait, 30 s).
      if (!plan.waitForConsumers) return true;
      const consumers = await jsm.consumers.list("EVENTS_USERS").next();
      return consumers.every((c) => c.num_pending + c.num_ack_pending === 0);
    }, ms, 100);
    return true;
  } catch (err) {
    note(`${(err as Error).message}; measuring anyway`);
    return false;
  }
}

let tagN = 0;

/** One steady-state point: warm-up, then `plan.pointMs` of UpdateUserProfile with `plan.inflight` in flight, CPU of every process measured. */
async function measure(label: string, s: Server, nodes: NodeProcess[], ids: string[], opts: { sqlite?: boolean; routing?: string } = {}): Promise<Point> {
  const drainedBefore = await drained(s, opts.sqlite);
  const warm = await s.load.run({ kind: "profile", ids, count: 200_000, inflight: plan.inflight, tag: `warm${tagN++}`, deadline: Date.now() + plan.warmupMs });
  s.expected += warm.events;
  await drained(s, opts.sqlite);
  const metricNames = ["nerve_group_commits_total", "nerve_group_commit_writes_total", 'nerve_requests_total|result="forwarded"', "nerve_group_commit_admission_waits_total", "nerve_group_commit_admission_wait_seconds_total"];
  const m0 = await Promise.all(nodes.map((n) => scrapeMetrics(n.facts.httpPort, metricNames)));
  const pg0 = opts.sqlite ? {} : await pgBackends(s.db);
  const pgCpu = cpuWindow(pg0);
  const pids: Record<string, number> = { "nats-server": s.nats.pid, bench: process.pid };
  for (const n of nodes) pids[`nerve:${n.id}`] = n.pid;
  const cpu = cpuWindow(pids);
  const r: CommandLoadResult = await s.load.run({ kind: "profile", ids, count: Math.ceil((plan.pointMs / 1000) * 25_000), inflight: plan.inflight, tag: `${label.replace(/\W+/g, "-")}-${tagN++}`, deadline: Date.now() + plan.pointMs });
  const spent = cpu();
  const pgSpent = pgCpu(opts.sqlite ? {} : await pgBackends(s.db));
  s.expected += r.events;
  const m1 = await Promise.all(nodes.map((n) => scrapeMetrics(n.facts.httpPort, metricNames)));
  const delta = (name: string) => {
    let sum = 0;
    for (let i = 0; i < nodes.length; i++) {
      if (!m0[i] || !m1[i]) return undefined;
      sum += m1[i]![name]! - m0[i]![name]!;
    }
    return sum;
  };
  const perCmd = (ms: number) => (ms * 1000) / Math.max(1, r.sent);
  const nerveMs = Object.entries(spent.byLabel).filter(([k]) => k.startsWith("nerve:")).reduce((a, [, v]) => a + v, 0);
  const machineUs = perCmd(spent.totalMs);
  const pgUs = opts.sqlite ? 0 : perCmd(pgSpent.totalMs);
  const commits = delta("nerve_group_commits_total");
  const writes = delta("nerve_group_commit_writes_total");
  const forwarded = delta('nerve_requests_total|result="forwarded"');
  const point: Point = {
    label,
    instances: nodes.length,
    routing: opts.routing ?? nodes.find((n) => n.facts.routing)?.facts.routing ?? "n/a",
    database: opts.sqlite ? "sqlite" : "postgresql",
    load: r,
    failed: failures(r),
    cpuUsPerCommand: {
      nerve: perCmd(nerveMs),
      byProcess: Object.fromEntries(Object.entries(spent.byLabel).map(([k, v]) => [k, perCmd(v)])),
      natsServer: perCmd(spent.byLabel["nats-server"] ?? 0),
      bench: perCmd(spent.byLabel.bench ?? 0),
      machine: machineUs,
      postgresBackends: pgUs,
      machineWithPostgres: machineUs + pgUs,
    },
    coresAllowPerSecond: (cpus().length * 1e6) / machineUs,
    coresAllowWithPostgresPerSecond: (cpus().length * 1e6) / (machineUs + pgUs),
    groupCommits: commits === undefined || writes === undefined ? undefined : { transactions: commits, writes, averageBatch: writes / Math.max(1, commits), admissionWaits: delta("nerve_group_commit_admission_waits_total") ?? 0, admissionWaitSeconds: delta("nerve_group_commit_admission_wait_seconds_total") ?? 0 },
    forwarded,
    drainedBefore,
  };
  console.log(`  ${elapsed()} ${label}: ${Math.round(r.perSecond)} commands/s, p50 ${r.latency.p50.toFixed(1)} / p99 ${r.latency.p99.toFixed(1)} ms, ${Math.round(machineUs)} µs machine CPU per command (+${Math.round(pgUs)} PostgreSQL)${point.failed ? `, ${point.failed} FAILED` : ""}`);
  return point;
}

/**
 * Per-partition gaps of one move: from the partition's last acknowledgement before the new owner's
 * first (the old owner's, as every run first waits until each owner has answered for its partitions),
 * to that first. `firstAfter` is how long after `settled` (the moment the leases showed the move
 * done) the slowest partition's first acknowledgement came: the part of the gap after the lease moved.
 */
function gapsOf(acks: Ack[], moved: Map<number, { from: string; to?: string }>, since: number, settled?: number): { gaps: number[]; missing: number[]; firstAfterSettledMs: number } {
  const gaps: number[] = [];
  const missing: number[] = [];
  let firstAfter = -Infinity;
  for (const [p, m] of moved) {
    let first = Infinity;
    for (const a of acks) if (a.partition === p && a.at > since && a.instance !== m.from && (m.to === undefined || a.instance === m.to) && a.at < first) first = a.at;
    if (first === Infinity) {
      missing.push(p);
      continue;
    }
    if (settled !== undefined) firstAfter = Math.max(firstAfter, first - settled);
    // The partition's last acknowledgement before that first one: by the old owner, or by whoever held
    // the partition before it if the old owner had not answered for it yet (it had only just taken it).
    let last = -Infinity;
    for (const a of acks) if (a.partition === p && a.at < first && a.at > last) last = a.at;
    // No acknowledgement before in the window kept: the gap is unknown, not zero.
    if (last === -Infinity) missing.push(p);
    else gaps.push(first - last);
  }
  return { gaps: gaps.sort((a, b) => a - b), missing, firstAfterSettledMs: firstAfter };
}

/**
 * Waits until every partition with users has an acknowledgement from its current owner after `since`.
 * Resolves with what was still missing at the deadline (nothing when it held): partitions whose owner
 * by the leases did not answer, with what their commands got instead.
 */
async function ownersAnswered(load: KeyedLoad, since: number, ms: number): Promise<string[]> {
  let o = await owners();
  const missing = () => {
    const seen = new Set<number>();
    for (let i = load.acks.length - 1; i >= 0; i--) {
      const a = load.acks[i]!;
      if (a.at <= since) break;
      if (o.get(a.partition) === a.instance) seen.add(a.partition);
    }
    return [...partitionsWithUsers].filter((p) => !seen.has(p));
  };
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (missing().length === 0) return [];
    await sleep(100);
    o = await owners();
  }
  const now = performance.now();
  return missing().map((p) => {
    let last: Ack | undefined;
    for (let i = load.acks.length - 1; i >= 0 && !last; i--) if (load.acks[i]!.partition === p) last = load.acks[i];
    const f = load.lastFailure.get(p);
    return `partition ${p} (held by ${o.get(p) ?? "nobody"}): last acknowledged ${last ? `by ${last.instance} ${Math.round(now - last.at)} ms ago` : "never"}${f ? `, last failure ${Math.round(now - f.at)} ms ago: ${f.why}` : ""}`;
  });
}

/**
 * Waits until every partition in `moved` (with users) has an acknowledgement by someone other than its
 * old owner after `since`; at the deadline, notes the ones that have not (they count as missing).
 */
async function ackedAfter(load: KeyedLoad, moved: Map<number, { from: string }>, since: number, ms: number, what: string): Promise<void> {
  const missing = () => {
    const seen = new Set<number>();
    for (let i = load.acks.length - 1; i >= 0; i--) {
      const a = load.acks[i]!;
      if (a.at <= since) break;
      if (moved.get(a.partition) && a.instance !== moved.get(a.partition)!.from) seen.add(a.partition);
    }
    return [...moved.keys()].filter((p) => !seen.has(p));
  };
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (missing().length === 0) return;
    await sleep(50);
  }
  const now = performance.now();
  const o = await owners();
  note(`${what}: ${missing().length} moved partition(s) not answered by a new owner within ${ms / 1000} s: ${missing().map((p) => {
    const f = load.lastFailure.get(p);
    return `${p} (held by ${o.get(p) ?? "nobody"}${f ? `; last failure ${Math.round(now - f.at)} ms ago: ${f.why}` : ""})`;
  }).join(", ")}`);
}

/**
 * Routing without the server mapping, right after the mapped 2-instance point: two instances on a
 * nats-server of their own (no mapping: they forward what they do not own) and a database of their own,
 * with the same users; the mapped instances stay idle meanwhile.
 */
async function forwardingPoint(env: Record<string, string>, ids: string[]): Promise<Point> {
  await pool.ensure(2);
  const natsB = await startNatsServer();
  const stopNats = cleanup.add("nats-server (no mapping)", () => natsB.stop());
  const pgB = await tempPostgres();
  const dropPg = cleanup.add("postgres database (forwarding)", () => pgB.drop());
  const B = await server("forward", natsB);
  const envB = { ...env, NATS_URL: natsB.url, NERVE_DB: pgB.url };
  const w1 = await pool.start("w1", envB);
  B.db = await openDatabase({ url: pgB.url, entities: clusterEntities });
  const closeDb = cleanup.add("forwarding database handle", () => B.db!.close());
  const w2 = await pool.start("w2", envB);
  await spread(["w1", "w2"], B.db);
  const r = await registerUsers(B.load, ids, plan.inflight, Date.now() + 60_000);
  B.expected += r.events;
  const point = await measure("2 instances, forwarding (no mapping)", B, [w1, w2], ids);
  await Promise.all([w1.stop(), w2.stop()]);
  await B.close();
  await closeDb();
  await dropPg();
  await stopNats();
  return point;
}

/** A p50 as the other benches' summaries have it (the nearest rank: the lower middle of an even count); NaN for none. */
const p50 = (xs: number[]) => (xs.length ? percentile([...xs].sort((a, b) => a - b), 50) : NaN);

async function main(): Promise<void> {
  const loadBefore = loadavg();
  console.log(`Nerve cluster bench${quick ? " (BENCH_QUICK: tiny sizes, figures are not meaningful)" : ""}: instances on one PostgreSQL, ${cpus().length} cores`);
  console.log(`load average before: ${loadBefore.map((l) => l.toFixed(2)).join(" ")}${loadBefore[0]! > 0.5 ? " — other work shares these cores, so figures will be lower and noisier" : ""}`);
  if (!(await postgresAvailable())) throw new Error(`no PostgreSQL answers at ${PG_ADMIN_URL}`);

  // Standbys load (tsx compiles Nerve in each) before anything is measured; in a quick run they load meanwhile.
  const spawnAt = performance.now();
  const initialStandbys = plan.cleanStandbyBoot ? pool.ensure(handoffOnly ? 3 : plan.forwardPoint ? 6 : 4) : pool.ensure(1).then(() => pool.spawnInBackground(3));
  // Awaited below, after NATS, PostgreSQL and the first server: a standby that dies meanwhile must not leave
  // it unhandled (the process would end there, without its results or its cleanup).
  initialStandbys.catch(() => undefined);

  const confDir = await mkdtemp(join(tmpdir(), "nerve-bench-cluster-"));
  cleanup.add("nats config dir", () => rm(confDir, { recursive: true, force: true }));
  await writeFile(join(confDir, "nats.conf"), readFileSync(MAPPING, "utf8"));
  const natsA = await startNatsServer({ config: join(confDir, "nats.conf") });
  cleanup.add("nats-server", () => natsA.stop());
  const pg = await tempPostgres();
  cleanup.add("postgres database", () => pg.drop());
  const A = await server("mapped", natsA);
  await initialStandbys;
  results.standbyLoadMs = performance.now() - spawnAt;

  // 0. Raw publish baseline, on the same server.
  const raw = handoffOnly ? [] : await benchRawPublish(A.client, { messages: plan.rawMessages, window: 256, bytes: 200, deadline: Date.now() + 30_000, serverPid: natsA.pid });
  const bare = raw[0];
  const rawCpuUs = bare ? bare.clientCpuUsPerMessage + (bare.serverCpuUsPerMessage ?? NaN) : NaN;
  results.rawPublish = raw;
  if (bare) console.log(
    table("0. Raw NATS baseline: JetStream publish, file stream, 200-byte messages, 256 acks in flight", ["variant", "messages", "msgs/s", "publisher CPU µs/msg", "nats-server CPU µs/msg", "machine µs/msg", "rate 2 cores allow"], raw.map((r) => {
      const us = r.clientCpuUsPerMessage + (r.serverCpuUsPerMessage ?? NaN);
      return [r.variant, r.messages, Math.round(r.perSecond), r.clientCpuUsPerMessage, r.serverCpuUsPerMessage ?? NaN, us, Math.round((cpus().length * 1e6) / us)];
    })),
  );

  // 1. One, two, three instances.
  const env = { NATS_URL: natsA.url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", NERVE_MAILBOX_SIZE: "4096" };
  console.log(handoffOnly ? "\nTwo instances for the hand-offs" : "\n1. Durable commands with 1, 2, 3 instances");
  const live: NodeProcess[] = [];
  const n1 = await pool.start("n1", env);
  live.push(n1);
  results.instanceStartMs = [n1.startMs];
  if (n1.facts.routing !== "mapped") note(`routing is ${n1.facts.routing ?? "unknown"}, not mapped: the partition mapping did not take`);
  db = await openDatabase({ url: pg.url, entities: clusterEntities });
  A.db = db;
  cleanup.add("bench database handle", () => db!.close());
  await spread(["n1"]);
  const pgInfo = await db.execute<{ v: string; sc: string }>("select version() as v, current_setting('synchronous_commit') as sc", [], "get");
  const ids = userIds(plan.users);
  for (const p of ids.map(partitionOf)) partitionsWithUsers.add(p);
  const reg = await registerUsers(A.load, ids, plan.inflight, Date.now() + 60_000);
  A.expected += reg.events;
  results.registration = { users: ids.length, perSecond: reg.perSecond };

  const scaling: Point[] = [];
  if (!handoffOnly) scaling.push(await measure("1 instance", A, live, ids));
  let forward: Point | undefined;
  for (const id of handoffOnly ? ["n2"] : ["n2", "n3"]) {
    const n = await pool.start(id, env);
    (results.instanceStartMs as number[]).push(n.startMs);
    live.push(n);
    await spread(live.map((x) => x.id));
    if (handoffOnly) continue;
    scaling.push(await measure(`${live.length} instances`, A, live, ids));
    if (live.length === 2 && plan.forwardPoint) forward = await forwardingPoint(env, ids);
  }
  results.scaling = scaling;
  results.forwarding = forward;

  // 3. Hand-offs with 2 instances under a light keyed load (before the fencing runs: it needs the instances these leave).
  if (live.length > 2) {
    const third = live.pop()!;
    const stoppedWith = await third.stop();
    if (stoppedWith !== 0) note(`${third.id} exited with ${stoppedWith} on SIGTERM`);
    await spread(live.map((x) => x.id));
  }
  console.log(`\n3. Hand-offs: ${plan.handoffRuns} runs with 2 instances, ${plan.light.rate} keyed commands/s (≤ ${plan.light.maxInFlight} in flight, retried every 20 ms)`);
  const load = keyedLoad(A.client, { users: ids, rate: plan.light.rate, maxInFlight: plan.light.maxInFlight, tag: `handoff-${Date.now().toString(36)}`, backoffMs: 20, timeoutMs: 2000 });
  const stopLoad = cleanup.add("keyed load", () => load.stop());
  await until("the light load is answered", () => load.acks.length >= 200, 30_000);
  await pool.ensure(1);
  const runs: HandoffRun[] = [];
  /** Partitions found unanswered by their owner before a run: a hand-off that did not finish. */
  const stuck: string[] = [];
  let hn = 0;
  try {
    for (let run = 1; run <= plan.handoffRuns; run++) {
      const [x, y] = live as [NodeProcess, NodeProcess];
      const movedFrom = async (from: string, to: string) =>
        new Map([...(await owners())].filter(([p, o]) => o === from && partitionsWithUsers.has(p)).map(([p]) => [p, { from, to }] as [number, { from: string; to: string }]));
      // Steady first: every partition (with users) answered by its current owner.
      const unanswered = await ownersAnswered(load, performance.now(), 15_000);
      if (unanswered.length > 0) {
        note(`run ${run}: ${unanswered.length} partition(s) not answered by their owner for 15 s before the leave: ${unanswered.join("; ")}`);
        stuck.push(...unanswered.map((u) => `run ${run}: ${u}`));
      }
      // Graceful leave: SIGTERM x; y takes x's partitions.
      const movedLeave = await movedFrom(x.id, y.id);
      const acksFrom = load.acks.length;
      const tTerm = performance.now();
      const reheld = timeUntilHeldBy([y.id], tTerm);
      const exit = await x.stop();
      const stopMs = performance.now() - tTerm;
      if (exit !== 0) note(`run ${run}: ${x.id} exited with ${exit} on SIGTERM`);
      const leaveHeldMs = await reheld;
      await ackedAfter(load, movedLeave, tTerm, 20_000, `run ${run}, leave`);
      const leave = gapsOf(load.acks, movedLeave, tTerm, tTerm + leaveHeldMs);

      // Join: a new instance takes about half of y's partitions from it.
      const joinId = `h${++hn}`;
      const tJoin = performance.now();
      const joined = await pool.start(joinId, env);
      await spread([y.id, joinId]);
      const joinSpreadMs = performance.now() - tJoin;
      const movedJoin = await movedFrom(joinId, joinId);
      for (const m of movedJoin.values()) m.from = y.id;
      await ackedAfter(load, movedJoin, tJoin, 20_000, `run ${run}, join`);
      const join = gapsOf(load.acks, movedJoin, tJoin, tJoin + joinSpreadMs);

      // Crash: kill -9 y; the joiner takes y's partitions once their leases lapse.
      const more = run < plan.handoffRuns ? 2 : plan.cleanStandbyBoot || handoffOnly ? 0 : plan.fencingPairs * 2 + 1;
      if (plan.cleanStandbyBoot) await pool.ensure(more);
      else pool.spawnInBackground(more);
      const movedCrash = await movedFrom(y.id, joinId);
      // A quick run starts the next run's second instance during the takeover (it may take some of y's
      // partitions itself); a full run starts it afterwards, so the takeover is the survivor's alone.
      const next = run < plan.handoffRuns ? `h${++hn}` : undefined;
      const overlap = plan.quick && next !== undefined;
      if (overlap) for (const m of movedCrash.values()) delete (m as { to?: string }).to;
      const tKill = performance.now();
      const takeover = timeUntilHeldBy(overlap ? [joinId, next] : [joinId], tKill);
      await y.kill9();
      const replacementStart = overlap ? pool.start(next, env) : undefined;
      // Awaited only after the takeover and its acks: a start that fails meanwhile must not leave it unhandled.
      replacementStart?.catch(() => undefined);
      const takeoverMs = await takeover;
      await ackedAfter(load, movedCrash, tKill, 20_000, `run ${run}, kill -9`);
      const crash = gapsOf(load.acks, movedCrash, tKill, tKill + takeoverMs);
      const during = load.acks.slice(acksFrom);

      // Back to two for the next run (after the last, the survivor is measured, then replaced).
      if (next !== undefined) {
        const replacement = await (replacementStart ?? pool.start(next, env));
        live.splice(0, live.length, joined, replacement);
        await spread([joinId, next]);
      } else {
        live.splice(0, live.length, joined);
      }
      const r: HandoffRun = {
        run,
        leave: { from: x.id, to: y.id, partitions: leave.gaps.length, maxGapMs: Math.max(...leave.gaps), p50GapMs: p50(leave.gaps), missing: leave.missing.length, sigtermToExitMs: stopMs, sigtermToAllHeldMs: leaveHeldMs, firstAckAfterHeldMs: leave.firstAfterSettledMs },
        join: { from: y.id, to: joinId, partitions: join.gaps.length, maxGapMs: Math.max(...join.gaps), p50GapMs: p50(join.gaps), missing: join.missing.length, startMs: joined.startMs, startToSpreadMs: joinSpreadMs, firstAckAfterSpreadMs: join.firstAfterSettledMs },
        crash: { from: y.id, to: joinId, takeoverMs, partitions: crash.gaps.length, maxAckGapMs: Math.max(...crash.gaps), missing: crash.missing.length, firstAckAfterTakeoverMs: crash.firstAfterSettledMs },
        worstWaitMs: Math.max(...during.map((a) => a.took)),
        retriedSoFar: { ...load.retried },
      };
      runs.push(r);
      results.handoff = { runs };
      console.log(`  ${elapsed()} run ${run}: leave gap max ${r.leave.maxGapMs.toFixed(0)} ms over ${r.leave.partitions} partitions; join gap max ${r.join.maxGapMs.toFixed(0)} ms; takeover after kill -9 ${r.crash.takeoverMs.toFixed(0)} ms; worst command wait ${r.worstWaitMs.toFixed(0)} ms`);
      // Acknowledgements older than this run are no longer needed.
      load.acks.splice(0, Math.max(0, load.acks.length - 50_000));
    }
  } finally {
    await stopLoad();
  }
  const handoff = {
    runs,
    rate: plan.light.rate,
    gapResolutionMs: (PARTITIONS * 1000) / plan.light.rate,
    acknowledged: load.ackCount,
    retried: load.retried,
    wrong: load.wrong,
    gaveUp: load.gaveUp,
    stuck,
  };
  results.handoff = handoff;
  // Retried keyed commands may have committed more events than were acknowledged: count the stream afresh once the outbox is empty.
  await until("the outbox is empty after the hand-offs", async () => Number((await db!.execute<{ n: string | number }>("select count(*) as n from nerve_outbox", [], "get")).n) === 0, 60_000, 100);
  A.expected = (await (await jetstreamManager(A.client)).streams.info("EVENTS_USERS")).state.messages;
  console.log(handoffTable(runs, handoff.gapResolutionMs));
  if (load.wrong.length > 0) note(`${load.wrong.length} keyed commands were answered wrongly, e.g. ${load.wrong.slice(0, 3).join("; ")}`);
  if (load.gaveUp > 0) note(`${load.gaveUp} keyed commands were given up after 30 s`);
  if (handoffOnly) {
    results.machine = machineFacts(loadBefore, A, pgInfo);
    results.seconds = (Date.now() - began) / 1000;
    console.log(`\nload average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadavg().map((l) => l.toFixed(2)).join(" ")}; run took ${(results.seconds as number).toFixed(1)} s`);
    if (handoff.wrong.length > 0) throw new Error(`${handoff.wrong.length} keyed command(s) answered with an error no retry changes`);
    return;
  }

  // 2. Fencing: one instance, fenced vs not, alternating.
  console.log(`\n2. Fencing: one instance on PostgreSQL with leases and fence checks vs without`);
  await pool.ensure(plan.fencingPairs * 2 + 1);
  // The hand-offs' survivor (it took partitions over from a crashed instance) is measured as it is, then
  // replaced: the fencing comparison runs fresh instances on both sides.
  const survivor = live.pop()!;
  const survivorPoint = await measure("1 instance after the hand-offs (took over from kill -9)", A, [survivor], ids);
  results.survivor = survivorPoint;
  await survivor.stop();
  let fenced: NodeProcess | undefined;
  const fencedPoints: Point[] = [];
  const unfencedPoints: Point[] = [];
  let comparison: "postgresql-sole-ownership" | "sqlite" = "postgresql-sole-ownership";
  const sqlite = await tempSqlitePath();
  cleanup.add("sqlite file", () => sqlite.cleanup());
  let sqliteRegistered = false;
  let fn = 0;
  for (let pair = 1; pair <= plan.fencingPairs; pair++) {
    fenced ??= await pool.start(`f${++fn}`, env);
    await spread([fenced.id]);
    fencedPoints.push(await measure(`fenced #${pair}`, A, [fenced], ids));
    await fenced.stop();
    fenced = undefined;
    let other: NodeProcess | undefined;
    if (comparison === "postgresql-sole-ownership") {
      other = await pool.start(`u${pair}`, { ...env, BENCH_NERVE_OWNERSHIP: "sole" });
      if (other.facts.fenced !== false) {
        comparison = "sqlite";
        note('startNerve has no `overrides.ownership = "sole"` hook yet: "without fencing" is the same single instance on SQLite, which also changes the database');
        await other.stop();
        other = undefined;
      }
    }
    if (!other) {
      other = await pool.start(`s${pair}`, { ...env, NERVE_DB: `sqlite:${sqlite.path}` });
      if (!sqliteRegistered) {
        const r = await registerUsers(A.load, ids, plan.inflight, Date.now() + 60_000);
        A.expected += r.events;
        sqliteRegistered = true;
      }
    }
    unfencedPoints.push(await measure(comparison === "sqlite" ? `SQLite #${pair}` : `without fencing #${pair}`, A, [other], ids, { sqlite: comparison === "sqlite" }));
    await other.stop();
  }
  const mean = (ps: Point[], f: (p: Point) => number) => ps.reduce((a, p) => a + f(p), 0) / ps.length;
  const fencing = {
    comparison,
    fenced: fencedPoints,
    unfenced: unfencedPoints,
    cpuRatio: mean(fencedPoints, (p) => p.cpuUsPerCommand.machine) / mean(unfencedPoints, (p) => p.cpuUsPerCommand.machine),
    cpuRatioWithPostgres: mean(fencedPoints, (p) => p.cpuUsPerCommand.machineWithPostgres) / mean(unfencedPoints, (p) => p.cpuUsPerCommand.machineWithPostgres),
    rateRatio: mean(fencedPoints, (p) => p.load.perSecond) / mean(unfencedPoints, (p) => p.load.perSecond),
    target: FENCING_TARGET,
  };
  results.fencing = fencing;

  const shown = [...scaling, ...(forward ? [forward] : []), survivorPoint];
  console.log(pointTable(`1. Durable commands through 1, 2, 3 instances on one PostgreSQL (UpdateUserProfile over ${fmtInt(ids.length)} users, ${plan.inflight} in flight, ${plan.pointMs / 1000} s per point)`, shown, bare!.perSecond));
  console.log(pointCpuTable("   Machine CPU per command (µs, from /proc over the measured window) and the rate 2 cores allow at that cost", shown, rawCpuUs));
  console.log(fencingTable(fencing));

  // 4. Roles split.
  const nerveSource = readFileSync(join(REPO, "src", "app", "nerve.ts"), "utf8");
  if (/NERVE_ROLES/.test(nerveSource)) {
    try {
      await pool.ensure(2);
      const cmds = await pool.start("r-commands", { ...env, NERVE_ROLES: "commands" });
      const rest = await pool.start("r-consumers-gateway", { ...env, NERVE_ROLES: "consumers,gateway" });
      await spread(["r-commands"]);
      const split = await measure("roles split", A, [cmds, rest], ids, { routing: cmds.facts.routing });
      await Promise.all([cmds.stop(), rest.stop()]);
      results.roles = { allInOne: fencedPoints, split };
      console.log(rolesTable(fencedPoints, split));
    } catch (err) {
      results.roles = { error: String((err as Error)?.message ?? err) };
      note(`roles split not measured: ${(err as Error)?.message ?? err}`);
    }
  } else {
    results.roles = "not measured: roles not implemented";
    console.log("\n== 4. Roles split (commands apart from consumers + gateway)\nnot measured: roles not implemented (src/app/nerve.ts does not read NERVE_ROLES)");
  }

  const loadAfter = loadavg();
  results.machine = machineFacts(loadBefore, A, pgInfo);
  results.seconds = (Date.now() - began) / 1000;
  console.log(
    `\nmachine: ${cpus().length} cpus (${cpus()[0]?.model}), node ${process.version}, nats-server ${A.client.info?.version}, ${pgInfo.v.split(" on ")[0]} (synchronous_commit ${pgInfo.sc}); ` +
      `instances are bench/cluster-node.ts processes (npm start's code, loaded ahead: ${Math.round(results.standbyLoadMs as number)} ms to load the first ones, Nerve's own start ${(results.instanceStartMs as number[]).map((m) => Math.round(m)).join("/")} ms); ` +
      `load average before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}, after ${loadAfter.map((l) => l.toFixed(2)).join(" ")}; run took ${(results.seconds as number).toFixed(1)} s`,
  );
  const failed = [survivorPoint, ...scaling, ...fencedPoints, ...unfencedPoints, ...(forward ? [forward] : [])].reduce((a, p) => a + p.failed, 0);
  if (failed > 0) throw new Error(`${failed} steady-state command(s) failed; see the tables`);
  if (handoff.wrong.length > 0) throw new Error(`${handoff.wrong.length} keyed command(s) answered with an error no retry changes`);
}

/** The machine and versions a run measured on, with the load average before and now. */
function machineFacts(loadBefore: number[], A: Server, pgInfo: { v: string; sc: string }): Record<string, unknown> {
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    totalMemoryGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    natsServer: A.client.info?.version ?? "unknown",
    postgres: pgInfo.v.split(" on ")[0],
    postgresSynchronousCommit: pgInfo.sc,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadavg(),
  };
}

function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

async function writeResults(ok: boolean, error?: unknown): Promise<void> {
  results.ok = ok;
  if (error) results.error = String((error as Error)?.stack ?? error);
  const suffix = `cluster${quick ? "-quick" : ""}${handoffOnly ? "-handoff" : ""}`;
  const file = await writeResultsFile(results as { startedAt: string }, suffix, ok);
  console.log(`\nresults: ${file}${ok ? ` and latest-${suffix}.json` : " (failed run; latest untouched)"}`);
}

runToEnd(main, { budgetMs: plan.budgetMs, cleanup, writeResults });
