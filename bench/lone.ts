/**
 * `npm run bench:lone [-- KEY=VALUE …]`: section 2c of the command bench alone, for trying a change to the
 * command path quickly. One Nerve on a private nats-server, warmed up (`BENCH_LONE_WARM_UP` commands at 256
 * in flight, default 5,000, not counted), UpdateUserProfile one at a time and then an open loop at a given
 * rate, with the service's own breakdown of where each command's time went. The KEY=VALUE arguments are added to the Nerve's environment (NERVE_ROLES=commands leaves the consumers out,
 * NERVE_SQLITE_WRITER=main takes the main connection); BENCH_LONE_RATE sets the open loop's rate (default
 * 2,000/s). It also prints what paused the main thread in each phase (bench/pauses.ts: the event loop's
 * delay, V8's collections by kind) and the CPU of each of this process's threads per command (the main
 * thread with the load generator; V8's helper threads; libuv's pool, where SQLite's statements run; the
 * write worker), and per command for each phase, Nerve's and the durable floor's alike, the CPU, sleeps
 * (a thread waiting to be woken), preemptions and write system calls of this process and of nats-server
 * (bench/thread-cpu.ts's processCounters: where an extra wake-up per command would show).
 * `BENCH_ALLOC_PROFILE=<file>` also samples the open loop's allocations (bench/alloc-profile.ts), `BENCH_ALLOC_PROFILE_FLOOR=<file>` the durable floor's,
 * `BENCH_CPU_PROFILE=<file>` writes a CPU profile of the main thread in the one-at-a-time phase (bench/cpu-profile.ts).
 * Last, with Nerve stopped, the durable floor (bench/durable-floor.ts: the least a durable command can be,
 * warmed up the same way, its store on the main thread when NERVE_SQLITE_WRITER is inline or main, else a write worker) under the
 * same two loads, for the client side's table. It writes nothing to bench/results: `npm run bench:commands` is the record.
 */
import { Cleanup, runToEnd } from "./cleanup.js";
import { failures, splitTable, type CommandLoadResult } from "./command-load.js";
import { startNerveWithUsers, waitConfirmed } from "./durable-commands.js";
import { startRig } from "./rig.js";
import { measureDiskFloor } from "./disk-floor.js";
import { readStages, stageBreakdown, stagesTable, tailsTable, type StageBreakdown } from "./stage-breakdown.js";
import { table } from "./table.js";
import { gcSummary, watchPauses, type Pauses } from "./pauses.js";
import { countersMeter, threadCpuByName, threadCpuSpent, type ProcessCounters } from "./thread-cpu.js";
import { startAllocationProfile } from "./alloc-profile.js";
import { profiled } from "./cpu-profile.js";
import { benchFloor } from "./floor.js";

const cleanup = new Cleanup();
const USERS = 1_000;
const LONE = 2_000;
const WARM_UP = Number(process.env.BENCH_LONE_WARM_UP ?? 5_000);
const PACED_SECONDS = 10;
const rate = Number(process.env.BENCH_LONE_RATE ?? 2000);
const extra = Object.fromEntries(process.argv.slice(2).map((a) => a.split("=", 2) as [string, string]));

async function main(): Promise<void> {
  const after = (ms: number) => Date.now() + ms;
  // BENCH_CLIENT=worker runs the load generator in a worker thread (bench/load-client.ts), off the service's event loop.
  const rig = await startRig(cleanup, process.env.BENCH_CLIENT === "worker" ? "worker" : "main");
  const { nats, client, load } = rig;
  const { nerve, stop: stopNerve, ids } = await startNerveWithUsers(cleanup, rig, USERS, extra);
  // A warm-up of the same command, not counted (BENCH_LONE_WARM_UP, default 5,000 at 256 in flight): cold,
  // the first commands ran unoptimized while V8's compiler threads took the other core (stop 48).
  if (WARM_UP > 0) {
    const w = await load.run({ kind: "profile", ids, count: WARM_UP, inflight: 256, tag: "warm-up", deadline: after(60_000) });
    if (failures(w) > 0 || w.cutShort) throw new Error(`warm-up: ${failures(w)} failed, ${w.sent} sent`);
    await waitConfirmed(nerve, client, ids.length + w.events, after(60_000));
  }
  const pauses: Pauses[] = [];
  // Per phase and command: this process (Nerve or the durable floor, with the load generator) and nats-server.
  const counted: (ProcessCounters | undefined)[][] = [];
  const pids = [process.pid, nats.pid];
  const threads: Map<string, number>[] = [];
  const measured = async (run: () => Promise<CommandLoadResult>): Promise<[CommandLoadResult, StageBreakdown]> => {
    const before = await readStages(nerve);
    const watch = watchPauses();
    const cpu0 = threadCpuByName(process.pid, true);
    const count = countersMeter(pids);
    const r = await run();
    counted.push(count(r.sent));
    pauses.push(watch.stop());
    threads.push(threadCpuSpent(cpu0, threadCpuByName(process.pid, true)));
    if (failures(r) > 0 || r.cutShort) throw new Error(`${failures(r)} failed, ${r.sent} sent${r.cutShort ? ", cut short" : ""}`);
    // Let the consumers' batches of this load finish before counting them.
    await new Promise((res) => setTimeout(res, 500));
    return [r, stageBreakdown(before, await readStages(nerve))];
  };
  // BENCH_CPU_PROFILE profiles the one-at-a-time phase, or the open loop with BENCH_CPU_PROFILE_PHASE=open.
  const profileOpen = process.env.BENCH_CPU_PROFILE_PHASE === "open";
  const [lone, loneStages] = await measured(() => profiled(profileOpen ? undefined : process.env.BENCH_CPU_PROFILE, () => load.run({ kind: "profile", ids, count: LONE, inflight: 1, tag: "lone", deadline: after(60_000) }), (r) => r.sent));
  const allocFile = process.env.BENCH_ALLOC_PROFILE;
  const stopAllocations = allocFile ? await startAllocationProfile() : undefined;
  const [paced, pacedStages] = await measured(() => profiled(profileOpen ? process.env.BENCH_CPU_PROFILE : undefined, () => load.run({ kind: "profile", ids, count: rate * PACED_SECONDS, inflight: 4096, rate, tag: "paced", deadline: after(PACED_SECONDS * 1000 + 15_000) }), (r) => r.sent));
  await stopAllocations?.(allocFile!, paced.sent);
  const disk = await measureDiskFloor();
  // The durable floor (bench/durable-floor.ts) under the same two loads, once Nerve no longer answers: the
  // least a durable command takes here and now. Its store where Nerve's is: the main thread with inline.
  await stopNerve();
  const store = extra.NERVE_SQLITE_WRITER === "inline" || extra.NERVE_SQLITE_WRITER === "main" ? "main" : "worker";
  const readers = { count: 1, ack: "all" as const };
  // Watched as Nerve's phases are (the delay monitor's 1 ms timer wakes the thread): the same conditions.
  const watchedFloor = async (run: () => ReturnType<typeof benchFloor>) => {
    const watch = watchPauses();
    const count = countersMeter(pids);
    const r = await run();
    counted.push(count(r.load.sent));
    pauses.push(watch.stop());
    return r;
  };
  if (WARM_UP > 0) await benchFloor(nats.url, load, { ids, count: WARM_UP, inflight: 256, deadline: after(60_000), readers, durable: store });
  const floorLone = await watchedFloor(() => benchFloor(nats.url, load, { ids, count: LONE, inflight: 1, deadline: after(60_000), readers, durable: store }));
  // BENCH_ALLOC_PROFILE_FLOOR samples the durable floor's open loop as BENCH_ALLOC_PROFILE does Nerve's: the two side by side.
  const floorAllocFile = process.env.BENCH_ALLOC_PROFILE_FLOOR;
  const stopFloorAllocations = floorAllocFile ? await startAllocationProfile() : undefined;
  const floorPaced = await watchedFloor(() => benchFloor(nats.url, load, { ids, count: rate * PACED_SECONDS, inflight: 4096, rate, deadline: after(PACED_SECONDS * 1000 + 15_000), readers, durable: store }));
  await stopFloorAllocations?.(floorAllocFile!, floorPaced.load.sent);
  console.log(`environment: ${JSON.stringify(extra)}`);
  console.log(
    table(
      `Client side (ms from each command's due time); the durable floor's store: ${store === "main" ? "the main thread" : "a write worker"}`,
      ["load", "commands", "per second", "p50", "p90", "p99", "p99.9", "max"],
      [
        ["Nerve, one at a time", lone],
        [`Nerve, open loop ${rate}/s`, paced],
        ["durable floor, one at a time", floorLone.load],
        [`durable floor, open loop ${rate}/s`, floorPaced.load],
      ].map(([name, r]) => {
        const l = r as CommandLoadResult;
        return [name as string, l.sent, Math.round(l.perSecond), l.latency.p50, l.latency.p90, l.latency.p99, l.latency.p999, l.latency.max];
      }),
    ),
  );
  console.log(splitTable([[`Nerve, open loop ${rate}/s`, paced], [`durable floor, open loop ${rate}/s`, floorPaced.load]]));
  console.log(stagesTable("Inside the service (means per command; a transaction at the write worker = wait + run + answer)", [["one at a time", loneStages], ["open loop", pacedStages]]));
  console.log(tailsTable("The tails: commands the client saw over each bound, and the service's stages over it (transactions and their parts per transaction)", [["one at a time", lone.over, loneStages], ["open loop", paced.over, pacedStages]]));
  const phases = ["Nerve, one at a time", "Nerve, open loop", "durable floor, one at a time", "durable floor, open loop"];
  console.log(table("The main thread's pauses (event loop delay at 1 ms resolution; V8 collections)", ["load", "delay p50 ms", "p99 ms", "max ms", "collections"], pauses.map((p, i) => [phases[i]!, p.loopDelayP50Ms, p.loopDelayP99Ms, p.loopDelayMaxMs, gcSummary(p)])));
  const us = (ms: number | undefined) => (ms === undefined ? "" : Math.round(ms * 1000));
  const n2 = (v: number | undefined) => (v === undefined ? "" : v.toFixed(2));
  console.log(
    table(
      "Per command: CPU µs, sleeps (a thread waiting, to be woken), preemptions and write system calls — this process (with the load generator) and nats-server",
      ["load", "CPU µs", "sleeps", "preempted", "writes", "nats-server CPU µs", "sleeps", "preempted", "writes"],
      counted.map(([mine, server], i) => [phases[i]!, us(mine?.cpuMs), n2(mine?.sleeps), n2(mine?.preempted), n2(mine?.writes), us(server?.cpuMs), n2(server?.sleeps), n2(server?.preempted), n2(server?.writes)]),
    ),
  );
  const names = [...new Set(threads.flatMap((t) => [...t.keys()]))].filter((n) => threads.some((t) => (t.get(n) ?? 0) > 0));
  console.log(
    table(
      "CPU µs per command by thread of this process (name:id; the load generator shares the main thread)",
      ["load", ...names],
      threads.map((t, i) => [i === 0 ? "one at a time" : "open loop", ...names.map((n) => Math.round(((t.get(n) ?? 0) * 1000) / [lone, paced][i]!.sent))]),
    ),
  );
  console.log(table("One durable transaction on this disk (see bench/disk-floor.ts)", ["synchronous", "transactions", "p50 ms", "p99 ms", "mean ms", "commit p50 ms"], disk.map((d) => [d.synchronous, d.transactions, d.p50Ms, d.p99Ms, d.meanMs, d.commitP50Ms])));
}

runToEnd(main, { budgetMs: 180_000, cleanup, writeResults: async () => undefined });
