/**
 * `npm run bench`: the command path's figures in one run against one private nats-server —
 * raw JetStream publishes, durable commands through Nerve, scaling with aggregates, cold
 * activation, and heap per idle actor. Prints a table per section and writes bench/results/.
 * Exits 0 on success, 1 on an error or any failed command, 2 past its time budget, 130 on a signal;
 * its nats-server and temporary databases are removed in every case.
 *
 * Section 2b runs the durable load with tracing off, on (OTLP/HTTP to a discarding sink) and off again.
 * Section 2d sets section 2's machine CPU per command against its floors: the contract's floor (1c) and
 * the storage floor (bench/storage-floor.ts: the write worker's group commits alone); the rest is the runtime's own.
 * `BENCH_QUICK=1` runs a tiny version for smoke tests (results in `*-command-path-quick.json`).
 * `BENCH_CLIENT=worker` runs the load generator in a worker thread instead of beside the service.
 * `BENCH_CPU_PROFILE=<file>` writes a V8 CPU profile of section 2 (that run does not become `latest`).
 * Any `NERVE_*` setting in its environment reaches the Nerves it starts (recorded as `serviceSettings`).
 * The heap figures need a collector: `--expose-gc` is used when given, else it is enabled at run time.
 */
import { cpus, loadavg, totalmem } from "node:os";
import { startNerve, type Nerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { openDatabase } from "../src/persistence/index.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { writeResultsFile } from "./results-file.js";
import { benchActivation, benchActorMemory } from "./actor-activation.js";
import { Cleanup, runToEnd } from "./cleanup.js";
import { failures, splitTable, type CommandLoadResult } from "./command-load.js";
import { profileLoad, registerUsers, userIds, usersStreamMessages, waitConfirmed, type DurablePhase } from "./durable-commands.js";
import { profiled } from "./cpu-profile.js";
import { collector } from "./gc.js";
import { benchPlan } from "./plan.js";
import { createSubscribers } from "../src/projections/index.js";
import { bindingsOf } from "../src/consumers/index.js";
import { Contexts } from "../contracts/index.js";
import { benchFloor, machineCpuUs, type FloorResult } from "./floor.js";
import { benchRawPublish } from "./raw-publish.js";
import { activationTable, durableTable, memoryTable, rawTable, scalingTable } from "./report.js";
import { startRig } from "./rig.js";
import { seedUserSnapshots } from "./seed-snapshots.js";
import { table } from "./table.js";
import { benchTracing, tracingTable } from "./tracing-cost.js";
import { readStages, stageBreakdown, stagesTable, tailsTable } from "./stage-breakdown.js";
import { measureDiskFloor, type DiskFloor } from "./disk-floor.js";
import { measureStorageFloor, type StorageFloor } from "./storage-floor.js";
import { ISSUE_12_TARGETS } from "./pairs-pooled.js";

/** The command-path issue's target: durable commands/s ÷ raw publishes/s (with P99_TARGET_MS, its reply p99). */
const RATIO_TARGET = 0.5;
/** Issue #12's targets (bench/pairs-pooled.ts, where pairs and pooling read them too); its latency targets (ms) as this bench records them. */
const T12 = ISSUE_12_TARGETS;
const LATENCY_TARGETS = { loneP50: T12.loneP50Ms, loneP99: T12.loneP99Ms, pacedP99: T12.pacedP99Ms } as const;
const CPU_TARGET = T12.cpu.toFixed(1);
const P99_TARGET_MS = 25;

const plan = benchPlan();
const cleanup = new Cleanup();
const logger = createLogger("silent");
const { gc, access: gcAccess } = collector();
const profileFile = process.env.BENCH_CPU_PROFILE || undefined;
const results: Record<string, unknown> = { startedAt: new Date().toISOString(), quick: plan.quick, plan, cpuProfileOfSection2: profileFile };

/** Settings from the bench's own environment that reach its Nerves (e.g. `NERVE_SQLITE_WRITER=inline npm run bench:commands`), recorded with the run. */
const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("NERVE_"))) as Record<string, string>;
results.serviceSettings = inherited;

/** Starts Nerve in-process with the bench's settings; stopping it is registered for cleanup. */
async function nerveOn(natsUrl: string, dbPath: string): Promise<{ nerve: Nerve; stop: () => Promise<void> }> {
  const env = { ...inherited, NATS_URL: natsUrl, NERVE_DB: `sqlite:${dbPath}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", NERVE_MAILBOX_SIZE: String(plan.mailboxSize) };
  const nerve = await startNerve(loadConfig(env), logger);
  return { nerve, stop: cleanup.add("nerve", () => nerve.stop()) };
}

function after(ms: number): number {
  return Date.now() + ms;
}

/** Section 2c's floor of a lone durable command: the floor's reply plus one transaction on this disk. */
function diskFloorTable(disk: DiskFloor[], floorP50: number, target: number): string {
  return table("2c. One durable transaction on this disk (better-sqlite3, WAL; begin immediate, 3 single-row inserts, commit), and the least a lone command can take", ["synchronous", "transactions", "p50 ms", "p99 ms", "commit p50 ms", "floor reply p50 + txn p50 ms", `÷ target p50 ${target} ms`], disk.map((d) => [d.synchronous, d.transactions, d.p50Ms, d.p99Ms, d.commitP50Ms, (floorP50 + d.p50Ms).toFixed(3), ((floorP50 + d.p50Ms) / target).toFixed(2)]));
}

/**
 * Section 2d: a durable command's machine CPU against the floors it stands on — the contract's floor (1c,
 * the fewest acks) and the storage floor (Nerve's write worker and statements alone, at section 2's
 * average batch and at the in-flight window's largest; and at section 2's batch on the main thread, which
 * prices the hop to the write thread) — then the durable floor (1d), which is the two together with what
 * else a durable command must do, and on which the ≤ 2.0 verdict rests; what Nerve spends above it is the
 * runtime's own. (The sum of the two floors measured apart leaves out the decoding, checking, state and
 * envelope of each command and what the two cost when they run at once: it said "within reach" at 1.63 ×
 * while the durable floor itself was 1.9–2.5 ×.)
 */
function floorsTable(f: { floorCpu: number; contractCpu: number; durableCpu: number; storage: StorageFloor[]; durableFloorCpu: { worker: number; main: number } }): string {
  const [atRun, atMost, inline] = f.storage as [StorageFloor, StorageFloor, StorageFloor | undefined];
  const x = (us: number) => (us / f.floorCpu).toFixed(2);
  const rows: (string | number)[][] = [
    ["the floor (1b): reply and one JetStream publish", f.floorCpu.toFixed(1), "1.00"],
    ["the contract's floor (1c, fewest acks): + the durable readers' deliveries and acks", f.contractCpu.toFixed(1), x(f.contractCpu)],
    [`the storage floor at section 2's average batch (${atRun.batch} writes per commit; ${atRun.commitMs} ms a commit)`, atRun.cpuUsPerCommand, x(atRun.cpuUsPerCommand)],
    [`the storage floor at ${atMost.batch} writes per commit (the most 256 in flight allow; ${atMost.commitMs} ms a commit)`, atMost.cpuUsPerCommand, x(atMost.cpuUsPerCommand)],
    ...(inline
      ? [[`the storage floor at section 2's batch with the engine on the main thread (NERVE_SQLITE_WRITER=inline; ${inline.commitMs} ms a commit): the hop to the write thread costs ${(atRun.cpuUsPerCommand - inline.cpuUsPerCommand).toFixed(1)} µs`, inline.cpuUsPerCommand, x(inline.cpuUsPerCommand)]]
      : []),
    ["contract floor + storage floor at section 2's batch", (f.contractCpu + atRun.cpuUsPerCommand).toFixed(1), x(f.contractCpu + atRun.cpuUsPerCommand)],
    [`contract floor + storage floor at ${atMost.batch}: the two measured apart`, (f.contractCpu + atMost.cpuUsPerCommand).toFixed(1), x(f.contractCpu + atMost.cpuUsPerCommand)],
    ...(["worker", "main"] as const).map((on) => {
      const cpu = f.durableFloorCpu[on];
      const label = on === "worker" ? "the write worker, as Nerve" : "its statements on the main thread";
      return [`the durable floor (1d, ${label}): the least a whole durable command costs here — the two together, plus decoding, checking, state and envelope`, cpu.toFixed(1), `${x(cpu)} (target ≤ ${CPU_TARGET}: ${cpu <= T12.cpu * f.floorCpu ? `within reach, ${(T12.cpu * f.floorCpu - cpu).toFixed(1)} µs left for a runtime` : "out of reach"})`];
    }),
    ["Nerve (section 2)", f.durableCpu.toFixed(1), x(f.durableCpu)],
    ["of which above the durable floor (worker): the runtime's own (actor, mailbox, bus, envelope checks, relay, metrics, and the GC of all that)", (f.durableCpu - f.durableFloorCpu.worker).toFixed(1), x(f.durableCpu - f.durableFloorCpu.worker)],
  ];
  return table("2d. Machine CPU per durable command against its floors (µs; the storage floor: bench/storage-floor.ts, the write worker's group commits of UpdateUserProfile-shaped writes with nothing else running; at equal machine use, durable ÷ floor rate = the floor's CPU ÷ durable CPU)", ["CPU per command", "µs", "÷ floor's"], rows);
}

/** Section 1d's table: the durable floor with each store, against the floor (1b) and issue #12's targets. */
function durableFloorTable(d: FloorResult[], floor: FloorResult): string {
  const floorCpu = machineCpuUs(floor);
  return table(
    "1d. The durable floor: 1c's responder and reader, and each request decoded, checked against its schema and committed (snapshot, event, outbox row; synchronous FULL) before its reply, the event published from the commit and its row deleted in a later one — nothing else of a runtime (bench/durable-floor.ts)",
    ["store", "requests/s", `÷ floor (target ≥ ${T12.rate})`, "p50 ms", "p99 ms", "writes per commit", "process CPU µs/req", "nats-server CPU µs/req", "machine µs/req", `÷ floor's CPU (target ≤ ${CPU_TARGET})`],
    d.map((f, i) => {
      const cpu = machineCpuUs(f);
      return [i === 0 ? "write worker (Nerve's default)" : "main thread (synchronous)", Math.round(f.load.perSecond), (f.load.perSecond / floor.load.perSecond).toFixed(3), f.load.latency.p50, f.load.latency.p99, f.durable?.averageBatch ?? NaN, f.processCpuUsPerRequest, f.serverCpuUsPerRequest ?? NaN, cpu, (cpu / floorCpu).toFixed(2)];
    }),
  );
}

/** Section 2c's table: Nerve and the floor, one at a time and open loop, with the targets. */
function latencyTable(rate: number, r: { lone: CommandLoadResult; paced: CommandLoadResult; floorLone: CommandLoadResult; floorPaced: CommandLoadResult; durableLatency: { on: string; lone: CommandLoadResult; paced: CommandLoadResult }[] }): string {
  const row = (name: string, l: CommandLoadResult, target: string) => [name, l.sent, Math.round(l.perSecond), l.latency.p50, l.latency.p90, l.latency.p99, l.latency.p999, l.latency.max, target];
  const met = (ok: boolean) => (ok ? "met" : "NOT met");
  const t = LATENCY_TARGETS;
  return table(`2c. Latency: UpdateUserProfile one at a time, and open loop at ${rate}/s (half of section 2's rate; ms from each command's due time)`, ["load", "commands", "per second", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "target"], [
    row("Nerve, one at a time", r.lone, `p50 ≤ ${t.loneP50}, p99 ≤ ${t.loneP99}: ${met(r.lone.latency.p50 <= t.loneP50 && r.lone.latency.p99 <= t.loneP99)}`),
    // The floor's own figures against the same targets: where the floor misses one, Nerve (which does the floor's work and more) cannot meet it in this run.
    row("floor, one at a time", r.floorLone, `the floor itself: ${met(r.floorLone.latency.p50 <= t.loneP50 && r.floorLone.latency.p99 <= t.loneP99)}`),
    row(`Nerve, open loop`, r.paced, `p99 ≤ ${t.pacedP99}: ${met(r.paced.latency.p99 <= t.pacedP99)}`),
    row(`floor, open loop`, r.floorPaced, `the floor itself: ${met(r.floorPaced.latency.p99 <= t.pacedP99)}`),
    // The durable floor (1d) against the same targets: the least a durable command takes on this machine.
    ...r.durableLatency.flatMap((d) => [
      row(`durable floor (${d.on}), one at a time`, d.lone, `the durable floor: ${met(d.lone.latency.p50 <= t.loneP50 && d.lone.latency.p99 <= t.loneP99)}`),
      row(`durable floor (${d.on}), open loop`, d.paced, `the durable floor: ${met(d.paced.latency.p99 <= t.pacedP99)}`),
    ]),
  ]);
}

/**
 * Nerve's durable consumers a UserProfileUpdated is delivered to: those that read EVENTS_USERS whole (a
 * durable filtered to another type, as security's to UserEmailChanged, never receives it).
 */
// Only the subscribers' declarations are read: no command is sent, no statement run.
const USERS_STREAM_READERS = createSubscribers({ bus: undefined as never, db: { dialect: "sqlite" } as never }).filter((s) =>
  bindingsOf(s.handles).some((b) => b.stream === Contexts.users.stream && (b.consumerFilter === undefined || b.consumerFilter === "events.users.UserProfileUpdated.*")),
).length;

async function main(): Promise<void> {
  const began = Date.now();
  const loadBefore = loadavg();
  console.log(`Nerve command-path bench${plan.quick ? " (BENCH_QUICK: tiny sizes, figures are not meaningful)" : ""}; load generator on the ${plan.client === "main" ? "main thread" : "worker thread"}${Object.keys(inherited).length > 0 ? `; Nerve's settings from the environment: ${JSON.stringify(inherited)}` : ""}`);
  if (loadBefore[0]! > 0.5) console.log(`note: load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")} before the run — other work shares these ${cpus().length} cores, so figures will be lower and noisier`);
  const { nats, client, load } = await startRig(cleanup, plan.client);
  const sqliteA = await tempSqlitePath();
  cleanup.add("sqlite (commands)", () => sqliteA.cleanup());
  const sqliteB = await tempSqlitePath();
  cleanup.add("sqlite (activation)", () => sqliteB.cleanup());

  // 1. Raw publish baseline.
  const raw = await benchRawPublish(client, { ...plan.raw, deadline: after(30_000), serverPid: nats.pid });
  const rawRate = raw[0]!.perSecond;
  results.rawPublish = raw;
  console.log(rawTable(raw, plan.raw.bytes, plan.raw.window));

  // 1b. The floor: request-reply plus one JetStream publish per command, nothing else. A fifth of it first,
  // not reported: the load generator's first load (its code still cold) measured the floor at up to 1.5×
  // its CPU per request, which flattered every ratio to it.
  await benchFloor(nats.url, load, { ids: userIds(plan.users), count: Math.round(plan.commands / 5), inflight: plan.inflight, deadline: after(30_000), serverPid: nats.pid });
  const floor = await benchFloor(nats.url, load, { ids: userIds(plan.users), count: plan.commands, inflight: plan.inflight, deadline: after(45_000), serverPid: nats.pid });
  const floorRatio = floor.load.perSecond / rawRate;
  results.floor = { ...floor, ratioToRaw: floorRatio };
  console.log(
    table("1b. Floor: a responder that answers at once and publishes one relay-shaped event per command (no actor, no database)", ["requests", "requests/s", "p50 ms", "p99 ms", "÷ raw publish", "process CPU µs/req", "nats-server CPU µs/req", "both µs/req"], [
      [floor.load.sent, Math.round(floor.load.perSecond), floor.load.latency.p50, floor.load.latency.p99, floorRatio.toFixed(3), floor.processCpuUsPerRequest, floor.serverCpuUsPerRequest ?? NaN, machineCpuUs(floor)],
    ]),
  );

  // 1c. The contract's floor: the floor with the durable readers the contract gives a users event.
  // UserProfileUpdated goes to EVENTS_USERS, which one of Nerve's subscribing contexts reads whole
  // (notifications, CONTRACT.md §2: through its own durable consumer; security's durable is filtered to
  // UserEmailChanged), so every durable command costs at least the floor plus one delivery and its ack,
  // whatever the implementation (USERS_STREAM_READERS counts them from the subscribers' bindings).
  // Read with an ack each (AckPolicy.Explicit, as Nerve read until stop 24) and with the fewest acks
  // (AckPolicy.All, the latest of each event-loop turn, about as Nerve acks now: once per committed
  // batch): the second is the lower bound.
  const floorCpu = machineCpuUs(floor);
  const contractFloors = [];
  for (const ack of ["explicit", "all"] as const) {
    contractFloors.push(await benchFloor(nats.url, load, { ids: userIds(plan.users), count: plan.commands, inflight: plan.inflight, deadline: after(45_000), serverPid: nats.pid, readers: { count: USERS_STREAM_READERS, ack } }));
  }
  results.contractFloor = contractFloors;
  console.log(
    table(`1c. The contract's floor: the floor (1b) with the ${USERS_STREAM_READERS === 1 ? "durable reader" : `${USERS_STREAM_READERS} durable readers`} of EVENTS_USERS a UserProfileUpdated is delivered to (Nerve's consumers reading that stream whole) taking and acking every event, nothing else; CPU until ${USERS_STREAM_READERS === 1 ? "it has" : "they have"} read all`, ["readers ack", "requests/s", "÷ floor", "p99 ms", "undelivered at load end", "catch-up s", "machine CPU µs/req", "÷ floor's CPU"], contractFloors.map((f) => {
      const cpu = machineCpuUs(f);
      return [f.readers!.ack === "all" ? "latest per turn (AckPolicy.All, ≈ Nerve: per batch)" : "each (AckPolicy.Explicit)", Math.round(f.load.perSecond), (f.load.perSecond / floor.load.perSecond).toFixed(3), f.load.latency.p99, f.readers!.lagAtLoadEnd, f.readers!.catchUpSeconds.toFixed(2), cpu, (cpu / floorCpu).toFixed(2)];
    })),
  );

  // 1d. The durable floor: the contract's floor (1c, fewest acks) that also decodes and checks each request,
  // makes its event and commits it with the snapshot and the outbox row before replying, through Nerve's
  // write worker or the same statements on the main thread (bench/durable-floor.ts). No actor, bus, relay,
  // idempotency, metrics or tracing: what is left between it and Nerve is the runtime's own.
  // Each warmed up first with a fifth of its load, not reported (as the floor is, and Nerve in section 2):
  // measured cold, a store's first load also paid for compiling its code (V8's compiler threads).
  const durableFloors: FloorResult[] = [];
  for (const on of ["worker", "main"] as const) {
    await benchFloor(nats.url, load, { ids: userIds(plan.users), count: Math.round(plan.commands / 5), inflight: plan.inflight, deadline: after(30_000), serverPid: nats.pid, readers: { count: USERS_STREAM_READERS, ack: "all" }, durable: on });
    durableFloors.push(await benchFloor(nats.url, load, { ids: userIds(plan.users), count: plan.commands, inflight: plan.inflight, deadline: after(45_000), serverPid: nats.pid, readers: { count: USERS_STREAM_READERS, ack: "all" }, durable: on }));
  }
  results.durableFloor = durableFloors;
  console.log(durableFloorTable(durableFloors, floor));

  // 2. Durable commands through the service.
  const a = await nerveOn(nats.url, sqliteA.path);
  const sqliteVersion = ((await a.nerve.db.execute("select sqlite_version() as v", [], "get")) as { v: string }).v;
  const ids = userIds(plan.users);
  const reg = await registerUsers(load, ids, plan.inflight, after(30_000));
  await waitConfirmed(a.nerve, client, ids.length, after(30_000));
  results.registration = { users: ids.length, seconds: reg.seconds, perSecond: reg.perSecond };
  // A fifth of the load first, not reported: measured cold, the first UpdateUserProfile load also paid for
  // compiling the command path (V8's compiler threads: ~14 µs per command of 40,000 in bench:wire, stop 48).
  const warmUp = await profileLoad(a.nerve, client, load, { label: "warm-up", ids, count: Math.round(plan.commands / 5), inflight: plan.inflight, deadline: after(30_000), confirm: { deadline: after(60_000) }, serverPid: nats.pid });
  const warmUpCpuUs = (warmUp.eventLoop.processCpuMsPerCommand + (warmUp.serverCpuMsPerCommand ?? NaN)) * 1000;
  results.warmUp = { commands: warmUp.load.sent, machineCpuUsPerCommand: warmUpCpuUs };
  const durable = await profiled(profileFile, () =>
    profileLoad(a.nerve, client, load, {
      label: "durable",
      ids,
      count: plan.commands,
      inflight: plan.inflight,
      deadline: after(45_000),
      confirm: { deadline: after(75_000) },
      serverPid: nats.pid,
    }),
  );
  if (durable.load.cutShort) throw new Error(`the durable load hit its deadline after ${durable.load.sent} commands`);
  const ratio = durable.load.perSecond / rawRate;
  results.durable = { ...durable, ratioToRaw: ratio, ratioTarget: RATIO_TARGET, ratioMet: ratio >= RATIO_TARGET, p99TargetMs: P99_TARGET_MS, p99Met: durable.load.latency.p99 <= P99_TARGET_MS };
  const rawCpu = raw[0]!.serverCpuUsPerMessage === undefined ? undefined : raw[0]!.clientCpuUsPerMessage + raw[0]!.serverCpuUsPerMessage;
  console.log(durableTable(durable, plan.inflight, rawRate, { ratio, ratioTarget: RATIO_TARGET, p99TargetMs: P99_TARGET_MS, rawCpuUsPerMessage: rawCpu, floorRatio }));
  console.log(`warm-up before section 2, not counted: ${warmUp.load.sent} commands at ${warmUpCpuUs.toFixed(1)} µs of machine CPU each (cold code compiled meanwhile)`);
  const durableCpu = (durable.eventLoop.processCpuMsPerCommand + (durable.serverCpuMsPerCommand ?? NaN)) * 1000;
  const leastContract = contractFloors.reduce((a, b) => (machineCpuUs(b) < machineCpuUs(a) ? b : a));
  const leastContractCpu = machineCpuUs(leastContract);
  const durablePerFloor = durable.load.perSecond / floor.load.perSecond;
  results.efficiency = {
    durablePerFloor,
    cpuPerFloorCpu: durableCpu / floorCpu,
    contractFloorCpuPerFloorCpu: leastContractCpu / floorCpu,
    durableCpuPerContractFloorCpu: durableCpu / leastContractCpu,
    durableFloorPerFloor: durableFloors.map((d) => d.load.perSecond / floor.load.perSecond),
    durableFloorCpuPerFloorCpu: durableFloors.map((d) => machineCpuUs(d) / floorCpu),
    durablePerDurableFloor: durableFloors.map((d) => durable.load.perSecond / d.load.perSecond),
    durableCpuPerDurableFloorCpu: durableFloors.map((d) => durableCpu / machineCpuUs(d)),
  };
  console.log(
    table("   Efficiency against the floor (issue #12; rates of one run, CPU per request)", ["figure", "value", "target", "met", "the contract's floor (1c, fewest acks) on the same scale", "the durable floor (1d: worker / main thread)"], [
      ["durable commands/s ÷ floor requests/s", durablePerFloor.toFixed(3), `≥ ${T12.rate}`, durablePerFloor >= T12.rate ? "yes" : "NO", (leastContract.load.perSecond / floor.load.perSecond).toFixed(3), durableFloors.map((d) => (d.load.perSecond / floor.load.perSecond).toFixed(3)).join(" / ")],
      ["machine CPU per durable command ÷ the floor's", (durableCpu / floorCpu).toFixed(2), `≤ ${CPU_TARGET}`, durableCpu / floorCpu <= T12.cpu ? "yes" : "NO", (leastContractCpu / floorCpu).toFixed(2), durableFloors.map((d) => (machineCpuUs(d) / floorCpu).toFixed(2)).join(" / ")],
      ["machine CPU per durable command ÷ the contract floor's", (durableCpu / leastContractCpu).toFixed(2), "", "", "1.00", durableFloors.map((d) => (machineCpuUs(d) / leastContractCpu).toFixed(2)).join(" / ")],
      ["machine CPU per durable command ÷ the durable floor's (worker / main thread)", durableFloors.map((d) => (durableCpu / machineCpuUs(d)).toFixed(2)).join(" / "), "", "", "", "1.00 / 1.00"],
      ["durable commands/s ÷ the durable floor's requests/s (worker / main thread)", durableFloors.map((d) => (durable.load.perSecond / d.load.perSecond).toFixed(3)).join(" / "), "", "", "", "1.000 / 1.000"],
    ]),
  );

  // 2b. What tracing costs: the same load with tracing off, on, and off again.
  const tracingCost = await benchTracing(a.nerve, client, load, { ids, count: plan.tracingCommands, inflight: plan.inflight, phaseMs: 45_000, serverPid: nats.pid });
  results.tracing = tracingCost;
  console.log(tracingTable(tracingCost));

  // 2c. Latency as a user sees it: one command at a time, then an open loop at half of section 2's rate,
  // latency counted from each command's due time (no coordinated omission). The floor's follow below.
  const beforeLatency = await usersStreamMessages(client);
  const loneStagesBefore = await readStages(a.nerve);
  const lone = await load.run({ kind: "profile", ids, count: plan.latency.lone, inflight: 1, tag: "lone", deadline: after(60_000) });
  const loneStages = stageBreakdown(loneStagesBefore, await readStages(a.nerve));
  const halfRate = Math.max(1, Math.round(durable.load.perSecond / 2));
  const pacedCount = Math.round(halfRate * plan.latency.pacedSeconds);
  const pacedStagesBefore = await readStages(a.nerve);
  const paced = await load.run({ kind: "profile", ids, count: pacedCount, inflight: 4096, rate: halfRate, tag: "paced", deadline: after(plan.latency.pacedSeconds * 1000 + 15_000) });
  const pacedStages = stageBreakdown(pacedStagesBefore, await readStages(a.nerve));
  for (const [name, r] of [["one at a time", lone], ["open loop", paced]] as const) {
    if (failures(r) > 0 || r.cutShort) throw new Error(`section 2c, ${name}: ${failures(r)} failed, ${r.sent} sent${r.cutShort ? ", cut short by its deadline" : ""}`);
  }
  await waitConfirmed(a.nerve, client, beforeLatency + lone.events + paced.events, after(30_000));

  // 3. Scaling with aggregates; the relay is drained (untimed) between steps so steps do not overlap.
  const scaling: DurablePhase[] = [];
  for (const n of plan.scaling.aggregates.filter((k) => k <= ids.length)) {
    const p = await profileLoad(a.nerve, client, load, { label: `scale-${n}`, ids: ids.slice(0, n), count: plan.scaling.commands, inflight: plan.inflight, deadline: after(plan.scaling.stepMs), serverPid: nats.pid });
    scaling.push(p);
    await waitConfirmed(a.nerve, client, p.expectedMessages, after(30_000));
  }
  results.scaling = scaling;
  console.log(scalingTable(scaling, plan.inflight, plan.mailboxSize));
  // Of the writer's admission waits, those for a projection's backlog (NERVE_CONSUMER_LAG_LIMIT); the rest waited for the relay.
  const writerTotals = { ...a.nerve.writer.stats, projectionWaits: a.nerve.consumers.backlogWaits };
  const relayTotals = { ...a.nerve.relay.stats };
  const systemTotals = { ...a.nerve.system.stats };
  await a.stop();
  results.writer = { ...writerTotals, averageBatch: writerTotals.writes / Math.max(1, writerTotals.transactions) };
  results.relay = relayTotals;
  results.actorSystem = systemTotals;
  console.log(
    table("Group-commit writer and relay, whole Nerve run (registrations, section 2, section 3)", ["transactions", "writes", "avg batch", "largest batch", "retried alone", "delete-only txns", "outbox rows deleted", "relay published", "relay duplicates", "relay failures", "relay scans", "relay live passes", "admission waits (for projections)"], [
      [writerTotals.transactions, writerTotals.writes, writerTotals.writes / Math.max(1, writerTotals.transactions), writerTotals.largestBatch, writerTotals.retriedAlone, writerTotals.deleteOnlyTransactions, writerTotals.outboxRowsDeleted, relayTotals.published, relayTotals.duplicates, relayTotals.failures, relayTotals.scans, relayTotals.livePasses, `${writerTotals.admissionWaits} (${writerTotals.projectionWaits})`],
    ]),
  );

  // 2c, the floor's side: the same two loads against the floor's responder (Nerve is stopped, so it alone answers).
  const floorLone = await benchFloor(nats.url, load, { ids, count: plan.latency.lone, inflight: 1, deadline: after(60_000), serverPid: nats.pid });
  const floorPaced = await benchFloor(nats.url, load, { ids, count: pacedCount, inflight: 4096, rate: halfRate, deadline: after(plan.latency.pacedSeconds * 1000 + 15_000), serverPid: nats.pid });
  // And the durable floor's (1d), each store, with its reader as Nerve has its consumers.
  const durableLatency: { on: "worker" | "main"; lone: CommandLoadResult; paced: CommandLoadResult }[] = [];
  for (const on of ["worker", "main"] as const) {
    const readers = { count: USERS_STREAM_READERS, ack: "all" as const };
    const dLone = await benchFloor(nats.url, load, { ids, count: plan.latency.lone, inflight: 1, deadline: after(60_000), serverPid: nats.pid, readers, durable: on });
    const dPaced = await benchFloor(nats.url, load, { ids, count: pacedCount, inflight: 4096, rate: halfRate, deadline: after(plan.latency.pacedSeconds * 1000 + 15_000), serverPid: nats.pid, readers, durable: on });
    durableLatency.push({ on, lone: dLone.load, paced: dPaced.load });
  }
  const disk = await measureDiskFloor(plan.quick ? 100 : 1000);
  // 2d. The storage floor at section 2's average batch and at the largest the in-flight window allows.
  const storageCommands = plan.quick ? 2_000 : 20_000;
  const runBatch = Math.max(1, Math.round(durable.writer.averageBatch));
  const storage = [
    await measureStorageFloor({ batch: runBatch, commands: storageCommands }),
    await measureStorageFloor({ batch: plan.inflight, commands: storageCommands }),
    await measureStorageFloor({ batch: runBatch, commands: storageCommands, where: "inline" }),
  ];
  results.storageFloor = storage;
  results.latency = { targets: LATENCY_TARGETS, halfRate, lone, paced, floorLone: floorLone.load, floorPaced: floorPaced.load, durableFloor: durableLatency, stages: { lone: loneStages, paced: pacedStages }, disk };
  console.log(latencyTable(halfRate, { lone, paced, floorLone: floorLone.load, floorPaced: floorPaced.load, durableLatency }));
  console.log(splitTable([["Nerve", paced], ["floor", floorPaced.load], ...durableLatency.map((d): [string, CommandLoadResult] => [`durable floor (${d.on})`, d.paced])]));
  console.log(stagesTable("2c. Inside the service, means per command (from its histograms' sums): reply = mailbox + prepare + commit (+ the API's own share); a transaction at the write worker = wait + run + answer", [["one at a time", loneStages], ["open loop", pacedStages]]));
  console.log(tailsTable("2c. The tails: commands the client saw over each bound, and the service's stages over it (transactions and their parts per transaction)", [["one at a time", lone.over, loneStages], ["open loop", paced.over, pacedStages]]));
  console.log(diskFloorTable(disk, floorLone.load.latency.p50, LATENCY_TARGETS.loneP50));
  console.log(floorsTable({ floorCpu, contractCpu: leastContractCpu, durableCpu, storage, durableFloorCpu: { worker: machineCpuUs(durableFloors[0]!), main: machineCpuUs(durableFloors[1]!) } }));

  // 4. Activation from snapshots, in a fresh Nerve over a seeded database.
  const seedIds = userIds(plan.activation.stored).map((id) => id.replace("bench-u", "seed-u"));
  const seedDb = await openDatabase({ url: `sqlite:${sqliteB.path}` });
  const seeded = await seedUserSnapshots(seedDb, seedIds).finally(() => seedDb.close());
  const b = await nerveOn(nats.url, sqliteB.path);
  const activation = await benchActivation(b.nerve, client, seedIds.slice(0, plan.activation.cold), seedIds.length, plan.activation.window);
  await b.stop();
  results.activation = activation;
  console.log(activationTable(activation));

  // 5. Heap per idle live actor, in a fresh ActorSystem over the same database.
  const memDb = await openDatabase({ url: `sqlite:${sqliteB.path}` });
  const closeMemDb = cleanup.add("sqlite handle (memory)", () => memDb.close());
  const memory = await benchActorMemory(memDb, seedIds.slice(0, plan.memory.actors), plan.activation.window, gc, gcAccess, seeded.averageStateBytes);
  await closeMemDb();
  results.memory = memory;
  console.log(memoryTable(memory));

  results.machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    totalMemoryGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    natsServer: client.info?.version ?? "unknown",
    sqlite: sqliteVersion,
    sqliteSynchronous: "FULL",
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadavg(),
    loadClient: plan.client,
  };
  results.seconds = (Date.now() - began) / 1000;
  const m = results.machine as Record<string, unknown>;
  console.log(
    `\nmachine: ${m.cpus} cpus (${m.cpuModel}), node ${m.node}, nats-server ${m.natsServer}, SQLite ${m.sqlite} (synchronous FULL, WAL); ` +
      `gc: ${gcAccess}; load average before/after ${loadBefore[0]!.toFixed(2)}/${loadavg()[0]!.toFixed(2)}; run took ${(results.seconds as number).toFixed(1)} s`,
  );

  const failed = failures(durable.load) + scaling.reduce((s, p) => s + failures(p.load), 0);
  if (failed > 0) throw new Error(`${failed} command(s) failed; see the tables`);
}

async function writeResults(ok: boolean, error?: unknown): Promise<void> {
  results.ok = ok;
  if (error) results.error = String((error as Error)?.stack ?? error);
  const suffix = plan.quick ? "command-path-quick" : "command-path";
  // A profiled run is slower than a plain one, and one with settings of its own is not the service's default: neither becomes the latest figures.
  const latest = ok && !profileFile && Object.keys(inherited).length === 0;
  const file = await writeResultsFile(results as { startedAt: string }, suffix, latest);
  console.log(`\nresults: ${file}${latest ? ` and latest-${suffix}.json` : ` (${!ok ? "failed" : profileFile ? "profiled" : "settings of its own"} run; latest untouched)`}`);
}

runToEnd(main, { budgetMs: plan.budgetMs, cleanup, writeResults });
