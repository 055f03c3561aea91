/**
 * `npm run bench:pairs`: issue #12's command-path targets as a verdict, not one run's figure. This VM's speed
 * moves by a quarter between minutes, and `bench:commands` measures the floor, the durable floors and
 * Nerve once each, minutes apart: one run's ratio says little (Nerve 1.94 and 2.86 × the floor's CPU in two
 * runs two minutes apart, stop 50). Here they are measured in rounds, close together, their order turned
 * each round (floor, durable floor with the write worker, durable floor on the main thread, the durable floor
 * + contract — the main-thread durable floor plus what CONTRACT.md asks of every command, bench/durable-floor.ts —
 * Nerve), each
 * round's ratios taken within the round, and each target judged over the rounds with a sign test: when
 * every one of R rounds falls on the same side of a target, the median falls there with confidence
 * 1 − 2^−R (the rounds are independent draws of the same ratio; with R = 6, 98.4 %). A target the durable
 * floors miss so is out of reach of any implementation on this machine: they are the least a durable
 * command does, the durable floor + contract the least one that serves the contract's clients (bench/durable-floor.ts), and the open loops all run at Nerve's half rate, below a cheaper
 * implementation's own.
 *
 * Per round and subject: a saturation load (UpdateUserProfile over 1,000 users, 256 in flight), machine
 * CPU per command (this process and nats-server) until every event is in its stream and read by every
 * durable reader of EVENTS_USERS (Nerve's: its outbox empty and its consumers' durables at the stream's
 * end, as the floors count their readers' catch-up), an open loop at one fixed rate — half of Nerve's
 * saturation, measured once before the rounds — whose p99 is the ≤ 20 ms target's figure (from each
 * command's due time), and `BENCH_PAIRS_LONE` (2,000) commands one at a time. Nerve is started afresh over the same SQLite file each round (warmed up with a
 * fifth of the load, not counted) and stopped before anything else runs: nothing of it idles under the
 * floors' figures.
 *
 * One at a time (`BENCH_PAIRS_LONE_METHOD`, recorded with the run as `loneMethod`; pairs-pooled pools the
 * methods apart): `fresh` (the default since stop 58) measures every subject the same way — on an instance
 * started for the phase alone (a new Nerve over the same file once its consumers are caught up; a floor's new
 * store), after `BENCH_PAIRS_LONE_WARM_UP` commands one at a time not counted (one per user: Nerve's actors
 * loaded, as a floor's states are from its start) — the issue's "one at a time on an idle machine".
 * `asymmetric`, every run before: Nerve right after its own saturation load on the same instance, each floor
 * fresh without a warm-up (bench:lone-after-load measured what that difference alone does to a floor).
 * `process`: as `fresh`, with each subject's service started in a child process for the phase alone
 * (bench/pairs-lone-child.ts, the same code), its client in this one — service and caller as a user runs them,
 * nothing of the bench's loads, other subjects or heap in the service's process. A child starts cold: with the
 * default warm-up its JIT is still at work in the counted phase (stop 59: every subject's lone p99 higher than
 * `fresh`'s in the same hour, run medians 3.9–4.9 ms against 1.8–2.2; 5,000 commands not counted brought a child's down
 * to 1.9–3.4), so its default warm-up is five commands per user.
 *
 * `BENCH_PAIRS_ROUNDS` (6), `BENCH_PAIRS_COMMANDS` (20,000 per saturation load), `BENCH_PAIRS_PACED_SECONDS`
 * (5), `BENCH_PAIRS_LONE` (2,000), `BENCH_PAIRS_LONE_METHOD` (fresh), `BENCH_PAIRS_LONE_WARM_UP` (1,000; 5,000 with `process`), `BENCH_PAIRS_LONE_CLIENT` (worker), `BENCH_PAIRS_ENGINES` (e.g. `inline,worker`: a Nerve per SQLite writer in
 * every round, the two compared within each round); `BENCH_QUICK=1` a tiny smoke run; `NERVE_*` settings in its environment reach
 * the Nerves it starts. Writes `bench/results/<time>-pairs.json` (and `latest-pairs.json`).
 */
import { cpus, loadavg } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Nerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { Cleanup, runToEnd } from "./cleanup.js";
import type { CommandLoadResult } from "./command-load.js";
import { registerUsers, userIds, usersStreamMessages, waitConfirmed } from "./durable-commands.js";
import { benchFloor, machineCpuUs, type DurableFloorKind } from "./floor.js";
import { startLoadClient, type LoadClient } from "./load-client.js";
import { median } from "./percentiles.js";
import type { Pauses } from "./pauses.js";
import { loneInChild } from "./pairs-lone-child.js";
import { after, checked, FLOOR_READERS, floorLone, nerveLone, nerveOn as nerveOnWith, readersCaughtUp, type LoneResult } from "./pairs-lone.js";
import { ISSUE_12_TARGETS, LONE_CLIENTS, LONE_METHODS, type LoneClient, type LoneMethod } from "./pairs-pooled.js";
import { writeResultsFile } from "./results-file.js";
import { startRig } from "./rig.js";
import { table } from "./table.js";
import { cpuMeter } from "./thread-cpu.js";

/** Issue #12's targets this bench judges. */
const TARGETS = ISSUE_12_TARGETS;
/** The floors, in the order of a round's first turn, and how benchFloor runs each (floor.ts; the floor itself without a store). */
const FLOOR_KIND = { floor: undefined, "durable floor (worker)": "worker", "durable floor (main thread)": "main", "durable floor + contract": "contract" } as const satisfies Record<string, DurableFloorKind | undefined>;
type Floor = keyof typeof FLOOR_KIND;
const FLOORS = Object.keys(FLOOR_KIND) as Floor[];
/**
 * `BENCH_PAIRS_ENGINES=inline,worker`: a Nerve per SQLite writer (NERVE_SQLITE_WRITER) in every round,
 * "Nerve (inline)" and "Nerve (worker)", compared within each round too; else one Nerve with the
 * environment's settings (the default engine by the machine's cores).
 */
const ENGINES = (process.env.BENCH_PAIRS_ENGINES ?? "").split(",").map((e) => e.trim()).filter(Boolean);
for (const e of ENGINES) if (!["worker", "inline", "main"].includes(e)) throw new Error(`BENCH_PAIRS_ENGINES: "${e}" is not worker, inline or main`);
const NERVES = ENGINES.length > 0 ? ENGINES.map((e) => `Nerve (${e})`) : ["Nerve"];
const SUBJECTS: string[] = [...FLOORS, ...NERVES];
type Subject = string;
/** A round's figures by subject (the floors always among them). */
type Round = Record<Floor, Measured> & Record<Subject, Measured>;
const of = (round: Round, subject: Subject): Measured => {
  const m = round[subject];
  if (!m) throw new Error(`no figures for ${subject}`);
  return m;
};
const engineOf = (subject: Subject) => /^Nerve \((\w+)\)$/.exec(subject)?.[1];

const quick = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true";
const ROUNDS = Number(process.env.BENCH_PAIRS_ROUNDS ?? (quick ? 2 : 6));
const COMMANDS = Number(process.env.BENCH_PAIRS_COMMANDS ?? (quick ? 1_000 : 20_000));
const PACED_SECONDS = Number(process.env.BENCH_PAIRS_PACED_SECONDS ?? (quick ? 1 : 5));
const LONE = Number(process.env.BENCH_PAIRS_LONE ?? (quick ? 100 : 2_000));
const USERS = quick ? 100 : 1_000;
const INFLIGHT = 256;
const LONE_METHOD = (process.env.BENCH_PAIRS_LONE_METHOD ?? "fresh") as LoneMethod;
if (!LONE_METHODS.includes(LONE_METHOD)) throw new Error(`BENCH_PAIRS_LONE_METHOD: "${LONE_METHOD}" is not ${LONE_METHODS.join(" or ")}`);
/**
 * Where the one-at-a-time phases' client runs (`BENCH_PAIRS_LONE_CLIENT`, recorded as `loneClient`): `worker`
 * (the default since stop 58), a NATS connection on a thread of its own — a caller apart from the service, as
 * the issue's "tried as a user would (… a lean client …)" and every user's service are: it reads a reply when
 * it arrives, not once the service's thread has done what followed the reply (publishing the event, the
 * acks), which on the main thread counted in every subject's latency, the more for the subject that does more
 * after its reply; `main`, on the bench's main thread beside every subject's service (every run before stop 58).
 */
const LONE_CLIENT = (process.env.BENCH_PAIRS_LONE_CLIENT ?? "worker") as LoneClient;
if (!LONE_CLIENTS.includes(LONE_CLIENT)) throw new Error(`BENCH_PAIRS_LONE_CLIENT: "${LONE_CLIENT}" is not ${LONE_CLIENTS.join(" or ")}`);
/**
 * Commands one at a time before the counted ones, with the fresh method: one per user by default (the load takes
 * the ids in turn); with the process method five per user, for a child's cold JIT (see above).
 */
const LONE_WARM_UP = Number(process.env.BENCH_PAIRS_LONE_WARM_UP ?? (LONE_METHOD === "process" ? 5 * USERS : USERS));

const cleanup = new Cleanup();
/** `NERVE_*` settings of the bench's own environment reach its Nerves (e.g. `NERVE_SQLITE_WRITER=inline npm run bench:pairs`), recorded with the run. */
const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("NERVE_"))) as Record<string, string>;
const results: Record<string, unknown> = { startedAt: new Date().toISOString(), quick, rounds: ROUNDS, commands: COMMANDS, pacedSeconds: PACED_SECONDS, lone: LONE, loneMethod: LONE_METHOD, loneClient: LONE_CLIENT, ...(LONE_METHOD !== "asymmetric" && { loneWarmUp: LONE_WARM_UP }), targets: TARGETS, serviceSettings: inherited };
/** Where the one Nerve's SQLite commits run (NERVE_SQLITE_WRITER, `auto` resolved by this machine's cores); with BENCH_PAIRS_ENGINES, each Nerve's name says. */
if (ENGINES.length === 0) results.sqliteWriter = loadConfig(inherited.NERVE_SQLITE_WRITER ? { NERVE_SQLITE_WRITER: inherited.NERVE_SQLITE_WRITER } : {}).NERVE_SQLITE_WRITER;

/** One subject's figures in one round. */
interface Measured {
  cpuUs: number;
  perSecond: number;
  loneP50Ms: number;
  loneP99Ms: number;
  pacedP99Ms: number;
  pacedP999Ms: number;
  /** V8's collections on the main thread during the counted one-at-a-time commands (the fresh method). */
  loneGc?: { count: number; totalMs: number; maxMs: number };
}

/** Every kind of collection together. */
const collections = (gc: Pauses["gc"]): { count: number; totalMs: number; maxMs: number } => {
  const all = Object.values(gc);
  return { count: all.reduce((n, k) => n + k.count, 0), totalMs: Math.round(all.reduce((n, k) => n + k.totalMs, 0) * 100) / 100, maxMs: Math.round(Math.max(0, ...all.map((k) => k.maxMs)) * 100) / 100 };
};

/** Nerve over `dbPath` with the bench's settings (`engine` as its NERVE_SQLITE_WRITER, when given). */
const nerveOn = (natsUrl: string, dbPath: string, engine?: string) => nerveOnWith(cleanup, inherited, natsUrl, dbPath, engine);

/** Nerve over `dbPath`, started afresh and warmed up (a fifth of the load, not counted). */
async function freshNerve(natsUrl: string, dbPath: string, client: NatsConnection, load: LoadClient, ids: string[], engine?: string): Promise<{ nerve: Nerve; stop: () => Promise<void> }> {
  const { nerve, stop } = await nerveOn(natsUrl, dbPath, engine);
  const before = await usersStreamMessages(client);
  const w = checked(await load.run({ kind: "profile", ids, count: Math.round(COMMANDS / 5), inflight: INFLIGHT, tag: "pairs-warm-up", deadline: after(60_000) }), "Nerve's warm-up");
  await waitConfirmed(nerve, client, before + w.events, after(60_000));
  await readersCaughtUp(client, after(60_000));
  return { nerve, stop };
}

/** Nerve's saturation load: machine CPU per command until its events are in the stream and read by every durable. */
async function nerveSaturation(nerve: Nerve, client: NatsConnection, load: LoadClient, ids: string[], serverPid: number): Promise<{ load: CommandLoadResult; cpuUs: number }> {
  const before = await usersStreamMessages(client);
  const cpu = cpuMeter(serverPid);
  const r = checked(await load.run({ kind: "profile", ids, count: COMMANDS, inflight: INFLIGHT, tag: "pairs-nerve", deadline: after(60_000) }), "Nerve's saturation load");
  await waitConfirmed(nerve, client, before + r.events, after(60_000));
  await readersCaughtUp(client, after(60_000));
  const spent = cpu();
  return { load: r, cpuUs: ((spent.processMs + (spent.serverMs ?? NaN)) * 1000) / r.sent };
}

/**
 * A target judged over the rounds: how many rounds met it, and the sign test's verdict — every round on one
 * side puts the median there with confidence 1 − 2^−R; anything else is not shown either way.
 */
function verdict(values: number[], meets: (v: number) => boolean): string {
  const met = values.filter(meets).length;
  const confidence = (100 * (1 - 2 ** -values.length)).toFixed(1);
  if (met === values.length) return `met in ${met} of ${values.length}: met (median, ${confidence} %)`;
  if (met === 0) return `met in 0 of ${values.length}: missed (median, ${confidence} %)`;
  return `met in ${met} of ${values.length}: not shown either way`;
}

async function main(): Promise<void> {
  const began = Date.now();
  const loadBefore = loadavg();
  console.log(`Nerve pairs bench${quick ? " (BENCH_QUICK: tiny sizes, figures are not meaningful)" : ""}: ${ROUNDS} rounds of ${SUBJECTS.join(", ")}${results.sqliteWriter ? ` (its SQLite engine ${results.sqliteWriter as string})` : ""}, ${COMMANDS} commands per saturation load, ${LONE} one at a time (${LONE_METHOD}${LONE_METHOD !== "asymmetric" ? `, after ${LONE_WARM_UP} not counted` : ""}; the client on ${LONE_CLIENT === "worker" ? "a thread of its own" : "the main thread"})${Object.keys(inherited).length > 0 ? `; Nerve's settings from the environment: ${JSON.stringify(inherited)}` : ""}`);
  if (loadBefore[0]! > 0.5) console.log(`note: load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")} before the run — other work shares these ${cpus().length} cores`);
  const { nats, client, load } = await startRig(cleanup, "main");
  // The one-at-a-time phases' client: the rig's, on this thread, or one on a thread of its own.
  let loneLoad = load;
  if (LONE_CLIENT === "worker") {
    loneLoad = await startLoadClient(nats.url, "worker");
    cleanup.add("one-at-a-time client", () => loneLoad.close());
  }
  const sqlite = await tempSqlitePath();
  cleanup.add("sqlite", () => sqlite.cleanup());
  const ids = userIds(USERS);
  const floorRun = (durable: DurableFloorKind | undefined, o: { count: number; rate?: number; seconds?: number; inflight?: number }, through: LoadClient = load) =>
    benchFloor(nats.url, through, { ids, count: o.count, inflight: o.inflight ?? (o.rate ? 4096 : INFLIGHT), deadline: after((o.seconds ?? 30) * 1000 + 30_000), serverPid: nats.pid, ...(o.rate ? { rate: o.rate } : {}), ...(durable ? { readers: FLOOR_READERS, durable } : {}) });

  // One at a time, fresh: a floor's own call (a new store), its first LONE_WARM_UP commands not counted — here, or in a process of its own.
  const sizes = { lone: LONE, warmUp: LONE_WARM_UP };
  const floorLoneOf = (durable: DurableFloorKind | undefined): Promise<LoneResult> =>
    LONE_METHOD === "process" ? loneInChild({ subject: "floor", durable, natsUrl: nats.url, ids, inherited, ...sizes }, loneLoad) : floorLone({ natsUrl: nats.url, load: loneLoad, ids, durable, serverPid: nats.pid, ...sizes });
  // One at a time, fresh: a Nerve started for the phase alone over the same file — here, or in a process of its own.
  const nerveLoneOf = (engine: string | undefined): Promise<LoneResult> =>
    LONE_METHOD === "process" ? loneInChild({ subject: "nerve", dbPath: sqlite.path, engine, natsUrl: nats.url, ids, inherited, ...sizes }, loneLoad) : nerveLone({ cleanup, inherited, natsUrl: nats.url, dbPath: sqlite.path, client, load: loneLoad, ids, engine, ...sizes });

  // The users, and the rate of every open loop: half of Nerve's saturation, measured once (not a round).
  let rate: number;
  {
    const { nerve, stop } = await nerveOn(nats.url, sqlite.path);
    await registerUsers(load, ids, INFLIGHT, after(30_000));
    await waitConfirmed(nerve, client, ids.length, after(30_000));
    await stop();
    const n = await freshNerve(nats.url, sqlite.path, client, load, ids);
    const s = await nerveSaturation(n.nerve, client, load, ids, nats.pid);
    await n.stop();
    rate = Math.max(1, Math.round(s.load.perSecond / 2));
    console.log(`calibration: Nerve ${Math.round(s.load.perSecond)} commands/s at ${s.cpuUs.toFixed(1)} µs each; every open loop at ${rate}/s for ${PACED_SECONDS} s`);
  }
  // The floors' code warmed up once (a fifth of the load each, not counted), as Nerve's is by its calibration.
  for (const durable of Object.values(FLOOR_KIND)) await floorRun(durable, { count: Math.round(COMMANDS / 5) });

  const rounds: Round[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = SUBJECTS.map((_, i) => SUBJECTS[(i + r) % SUBJECTS.length]!);
    const round = {} as Round;
    for (const subject of order) {
      const paced = rate * PACED_SECONDS;
      if (NERVES.includes(subject)) {
        const engine = engineOf(subject);
        const n = await freshNerve(nats.url, sqlite.path, client, load, ids, engine);
        const s = await nerveSaturation(n.nerve, client, load, ids, nats.pid);
        // The asymmetric method's lone phase runs on this instance, before the open loop; the fresh one on an instance of its own, after it.
        const before = await usersStreamMessages(client);
        const onThis = LONE_METHOD === "asymmetric" ? checked(await loneLoad.run({ kind: "profile", ids, count: LONE, inflight: 1, tag: "pairs-lone", deadline: after(60_000) }), "Nerve one at a time") : undefined;
        const p = checked(await load.run({ kind: "profile", ids, count: paced, inflight: 4096, rate, tag: "pairs-paced", deadline: after(PACED_SECONDS * 1000 + 30_000) }), "Nerve's open loop");
        await waitConfirmed(n.nerve, client, before + (onThis?.events ?? 0) + p.events, after(60_000));
        await n.stop();
        const { l, gc } = onThis ? { l: onThis, gc: undefined } : await nerveLoneOf(engine);
        round[subject] = { cpuUs: s.cpuUs, perSecond: s.load.perSecond, loneP50Ms: l.latency.p50, loneP99Ms: l.latency.p99, ...(gc && { loneGc: collections(gc) }), pacedP99Ms: p.latency.p99, pacedP999Ms: p.latency.p999 };
      } else {
        const durable = FLOOR_KIND[subject as Floor];
        const s = await floorRun(durable, { count: COMMANDS });
        const { l, gc } = LONE_METHOD === "asymmetric" ? { l: (await floorRun(durable, { count: LONE, inflight: 1 }, loneLoad)).load, gc: undefined } : await floorLoneOf(durable);
        const p = await floorRun(durable, { count: paced, rate, seconds: PACED_SECONDS });
        checked(s.load, `${subject}'s saturation load`);
        checked(l, `${subject} one at a time`);
        checked(p.load, `${subject}'s open loop`);
        round[subject] = { cpuUs: machineCpuUs(s), perSecond: s.load.perSecond, loneP50Ms: l.latency.p50, loneP99Ms: l.latency.p99, ...(gc && { loneGc: collections(gc) }), pacedP99Ms: p.load.latency.p99, pacedP999Ms: p.load.latency.p999 };
      }
    }
    rounds.push(round);
    const f = round.floor;
    console.log(
      `round ${r + 1} of ${ROUNDS} (${order.join(" → ")}): ` +
        SUBJECTS.slice(1)
          .map((s) => [s, of(round, s)] as const)
          .map(([s, m]) => `${s} ${(m.cpuUs / f.cpuUs).toFixed(2)} × CPU, ${(m.perSecond / f.perSecond).toFixed(3)} × rate, lone ${m.loneP50Ms.toFixed(2)} / ${m.loneP99Ms.toFixed(2)} ms${m.loneGc ? ` (GC ${m.loneGc.count}×, longest ${m.loneGc.maxMs.toFixed(1)} ms)` : ""}, open loop p99 ${m.pacedP99Ms.toFixed(1)} ms`)
          .join("; ") +
        `; the floor ${f.cpuUs.toFixed(1)} µs, ${Math.round(f.perSecond)}/s, p99 ${f.pacedP99Ms.toFixed(1)} ms`,
    );
  }

  const perRound = (s: Subject, f: (m: Measured, floor: Measured) => number) => rounds.map((r) => f(of(r, s), r.floor));
  const figures = SUBJECTS.slice(1).map((s) => ({
    subject: s,
    cpu: perRound(s, (m, f) => m.cpuUs / f.cpuUs),
    rate: perRound(s, (m, f) => m.perSecond / f.perSecond),
    loneP50: perRound(s, (m) => m.loneP50Ms),
    loneP99: perRound(s, (m) => m.loneP99Ms),
    pacedP99: perRound(s, (m) => m.pacedP99Ms),
  }));
  const fmt = (xs: number[], d: number) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
  console.log(
    table(
      `Issue #12's command-path targets over ${ROUNDS} rounds (median, range; each ratio within its round; open loops at ${rate}/s; the floor's p99 ${fmt(perRound("floor", (m) => m.pacedP99Ms), 1)} ms)`,
      ["subject", `machine CPU ÷ floor's (≤ ${TARGETS.cpu})`, "verdict", `rate ÷ floor's (≥ ${TARGETS.rate})`, "verdict", `one at a time p50 ms (≤ ${TARGETS.loneP50Ms})`, "verdict", `p99 ms (≤ ${TARGETS.loneP99Ms})`, "verdict", `open loop p99 ms (≤ ${TARGETS.pacedP99Ms})`, "verdict"],
      figures.map((x) => [
        x.subject,
        fmt(x.cpu, 2),
        verdict(x.cpu, (v) => v <= TARGETS.cpu),
        fmt(x.rate, 3),
        verdict(x.rate, (v) => v >= TARGETS.rate),
        fmt(x.loneP50, 2),
        verdict(x.loneP50, (v) => v <= TARGETS.loneP50Ms),
        fmt(x.loneP99, 2),
        verdict(x.loneP99, (v) => v <= TARGETS.loneP99Ms),
        fmt(x.pacedP99, 1),
        verdict(x.pacedP99, (v) => v <= TARGETS.pacedP99Ms),
      ]),
    ),
  );
  const worker = rounds.map((r) => r["durable floor (worker)"].cpuUs);
  const mainThread = rounds.map((r) => r["durable floor (main thread)"].cpuUs);
  const contract = rounds.map((r) => r["durable floor + contract"].cpuUs);
  for (const s of NERVES) {
    const nerve = rounds.map((r) => of(r, s).cpuUs);
    console.log(`${s} above the durable floor (worker), machine CPU per command within each round: ${fmt(nerve.map((n, i) => n - worker[i]!), 1)} µs`);
    console.log(`${s} above the durable floor + contract, the same: ${fmt(nerve.map((n, i) => n - contract[i]!), 1)} µs`);
  }
  console.log(`the durable floor + contract above the durable floor (main thread), the same — what the contract's per-command asks cost at the least: ${fmt(contract.map((c, i) => c - mainThread[i]!), 1)} µs`);
  console.log(`the floor's 2 × leaves the durable floor (worker) ${fmt(rounds.map((r) => 2 * r.floor.cpuUs - r["durable floor (worker)"].cpuUs), 1)} µs for a runtime`);
  // Two engines: which spends less, round by round (the same sign test: every round one way, or not shown).
  if (NERVES.length === 2) {
    const [a, b] = NERVES as [string, string];
    const diff = (f: (m: Measured) => number) => rounds.map((r) => f(of(r, a)) - f(of(r, b)));
    const lower = (xs: number[]) => `${xs.filter((x) => x < 0).length} of ${xs.length} rounds lower (${verdict(xs, (x) => x < 0).split(": ")[1]})`;
    const cpu = diff((m) => m.cpuUs);
    const lone99 = diff((m) => m.loneP99Ms);
    const paced = diff((m) => m.pacedP99Ms);
    console.log(`${a} − ${b} within each round: machine CPU ${fmt(cpu, 1)} µs a command, ${a} ${lower(cpu)}; lone p99 ${fmt(lone99, 2)} ms, ${lower(lone99)}; open loop p99 ${fmt(paced, 1)} ms, ${lower(paced)}`);
    results.engines = { a, b, cpuUsDiff: cpu, loneP99MsDiff: lone99, pacedP99MsDiff: paced };
  }
  results.rate = rate;
  results.roundsMeasured = rounds;
  results.summary = Object.fromEntries(figures.map((x) => [x.subject, { cpuPerFloor: x.cpu, ratePerFloor: x.rate, pacedP99Ms: x.pacedP99, loneP50Ms: x.loneP50, loneP99Ms: x.loneP99, medians: { cpu: median(x.cpu), rate: median(x.rate), loneP50Ms: median(x.loneP50), loneP99Ms: median(x.loneP99), pacedP99Ms: median(x.pacedP99) } }]));
  results.machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", node: process.version, natsServer: client.info?.version ?? "unknown", loadAverageBefore: loadBefore, loadAverageAfter: loadavg() };
  results.seconds = (Date.now() - began) / 1000;
  console.log(`\nrun took ${(results.seconds as number).toFixed(1)} s; load average before/after ${loadBefore[0]!.toFixed(2)}/${loadavg()[0]!.toFixed(2)}`);
}

async function writeResults(ok: boolean, error?: unknown): Promise<void> {
  results.ok = ok;
  if (error) results.error = String((error as Error)?.stack ?? error);
  const suffix = quick ? "pairs-quick" : "pairs";
  // A run with settings of its own (or engines of its own) is not the service's default: it does not become the latest figures.
  const latest = ok && Object.keys(inherited).length === 0 && ENGINES.length === 0;
  const file = await writeResultsFile(results as { startedAt: string }, suffix, latest);
  console.log(`\nresults: ${file}${latest ? ` and latest-${suffix}.json` : ` (${ok ? "settings of its own" : "failed run"}; latest untouched)`}`);
}

runToEnd(main, { budgetMs: quick ? 120_000 : 30 * 60_000, cleanup, writeResults });
