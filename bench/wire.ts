/**
 * `npm run bench:wire [-- KEY=VALUE …]`: what one durable command costs the machine, thread by thread, and
 * what it puts on the wire. One Nerve on a private nats-server (the KEY=VALUE arguments added to its
 * environment), 1,000 users registered, then `BENCH_WIRE_COMMANDS` (default 40,000) UpdateUserProfile
 * commands from the load generator in a worker thread, 256 in flight (or an open loop at
 * `BENCH_WIRE_RATE`/s), after a warm-up of `BENCH_WIRE_WARM_UP` (default a quarter of that) not counted. Prints, per command:
 * - each NATS connection's messages and bytes both ways (nats-server's /connz): Nerve's share of the wire;
 * - nats-server's CPU, and each thread of this process: its CPU and its wait for a core on the run
 *   queue (/proc/…/schedstat), in the order the threads were created (the main thread first, then V8's
 *   helpers, the load generator's worker, Nerve's write worker …);
 * - the scavenges of the main thread's heap are in `--trace-gc-nvp`'s output when that flag is given.
 * The load's tail (2 s after the last reply, for the consumers and the relay) is counted. It writes nothing
 * to bench/results: a diagnostic beside `npm run bench:commands`, whose section 2 is the record.
 */
import { readdirSync, readFileSync } from "node:fs";
import { startNerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { Cleanup, runToEnd } from "./cleanup.js";
import { failures } from "./command-load.js";
import { registerUsers, userIds, waitConfirmed } from "./durable-commands.js";
import { startRig } from "./rig.js";
import { table } from "./table.js";
import { processCpuMs } from "./thread-cpu.js";

const cleanup = new Cleanup();
const COMMANDS = Number(process.env.BENCH_WIRE_COMMANDS ?? 40_000);
const RATE = process.env.BENCH_WIRE_RATE ? Number(process.env.BENCH_WIRE_RATE) : undefined;
const extra = Object.fromEntries(process.argv.slice(2).map((a) => a.split("=", 2) as [string, string]));

interface Connection {
  cid: number;
  name?: string;
  in_msgs: number;
  out_msgs: number;
  in_bytes: number;
  out_bytes: number;
}

async function connections(httpPort: number): Promise<Map<number, Connection>> {
  const body = (await (await fetch(`http://127.0.0.1:${httpPort}/connz?limit=1000`)).json()) as { connections: Connection[] };
  return new Map(body.connections.map((c) => [c.cid, c]));
}

/** What {@link threads} reads of one thread. */
interface ThreadSample {
  name: string;
  start: number;
  cpuNs: number;
  waitNs: number;
  /** Read- and write-type system calls (/proc/…/io `syscr`, `syscw`: read, recvmsg, pread…; write, writev, sendmsg, pwrite…). */
  reads: number;
  writes: number;
  /** Times the thread gave up its core to wait (/proc/…/status): each one a sleep and a wake-up. */
  sleeps: number;
}

/** A field `name: value` of a /proc text file. */
function procField(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s*(\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

/** A thread's CPU and run-queue wait (ns), system calls, sleeps, and its start (clock ticks after boot), by tid. */
function threads(pid: number): Map<string, ThreadSample> {
  const out = new Map<string, ThreadSample>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const [cpuNs, waitNs] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").trim().split(" ").map(Number) as [number, number];
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const start = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
      const name = tid === String(pid) ? "main" : readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const io = readFileSync(`/proc/${pid}/task/${tid}/io`, "utf8");
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      out.set(tid, { name, start, cpuNs, waitNs, reads: procField(io, "syscr"), writes: procField(io, "syscw"), sleeps: procField(status, "voluntary_ctxt_switches") });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

async function main(): Promise<void> {
  const { nats, client, load } = await startRig(cleanup, "worker");
  const sqlite = await tempSqlitePath();
  cleanup.add("sqlite", () => sqlite.cleanup());
  const env = { NATS_URL: nats.url, NERVE_DB: `sqlite:${sqlite.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", NERVE_MAILBOX_SIZE: "4096", ...extra };
  const nerve = await startNerve(loadConfig(env), createLogger("silent"));
  cleanup.add("nerve", () => nerve.stop());
  const ids = userIds(1_000);
  await registerUsers(load, ids, 256, Date.now() + 30_000);
  await waitConfirmed(nerve, client, ids.length, Date.now() + 30_000);
  // Warm-up, not counted (BENCH_WIRE_WARM_UP, default a quarter of the load): measured cold, the load also
  // paid for compiling the command path on V8's compiler threads (~14 µs per command of 40,000, stop 48).
  const warmUp = Number(process.env.BENCH_WIRE_WARM_UP ?? Math.round(COMMANDS / 4));
  if (warmUp > 0) {
    const w = await load.run({ kind: "profile", ids, count: warmUp, inflight: 256, tag: "wire-warm-up", deadline: Date.now() + 120_000 });
    if (failures(w) > 0 || w.cutShort) throw new Error(`warm-up: ${failures(w)} failed, ${w.sent} sent${w.cutShort ? ", cut short" : ""}`);
    await waitConfirmed(nerve, client, ids.length + w.events, Date.now() + 60_000);
  }
  await new Promise((r) => setTimeout(r, 2_000));
  const wire0 = await connections(nats.httpPort);
  const threads0 = threads(process.pid);
  const server0 = processCpuMs(nats.pid) ?? NaN;
  const writer0 = { ...nerve.writer.stats };
  const checkpoints0 = { ...nerve.db.checkpoints };
  const started = performance.now();
  const r = await load.run({ kind: "profile", ids, count: COMMANDS, inflight: RATE ? 4096 : 256, rate: RATE, tag: "wire", deadline: Date.now() + 120_000 });
  if (failures(r) > 0 || r.cutShort) throw new Error(`${failures(r)} failed, ${r.sent} sent${r.cutShort ? ", cut short" : ""}`);
  await new Promise((res) => setTimeout(res, 2_000));
  const wallMs = performance.now() - started;
  const threads1 = threads(process.pid);
  const serverUs = (((processCpuMs(nats.pid) ?? NaN) - server0) * 1000) / COMMANDS;
  const writer1 = nerve.writer.stats;
  const wire1 = await connections(nats.httpPort);
  const per = (v: number) => (v / COMMANDS).toFixed(2);
  console.log(`environment: ${JSON.stringify(extra)}; ${COMMANDS.toLocaleString()} commands, ${Math.round(r.perSecond).toLocaleString()}/s ${RATE ? "(open loop)" : "(256 in flight)"}, p50 / p99 ${r.latency.p50.toFixed(2)} / ${r.latency.p99.toFixed(2)} ms; counted over ${(wallMs / 1000).toFixed(1)} s`);
  // The WAL's checkpoints over the load (a RESTART that a writer or an older snapshot's reader holds up past its 250 ms is blocked: the WAL does not start over and grows meanwhile).
  const cp = nerve.db.checkpoints;
  if (cp) console.log(`WAL checkpoints: ${cp.runs - (checkpoints0.runs ?? 0)} run, ${cp.restarts - (checkpoints0.restarts ?? 0)} of them RESTARTs (${cp.restartsBlocked - (checkpoints0.restartsBlocked ?? 0)} blocked), ${cp.failures - (checkpoints0.failures ?? 0)} failed; the longest since start ${cp.longestMs.toFixed(0)} ms; the WAL's frames at the latest ${cp.walFrames}`);
  // How the commands shared their transactions: fewer, larger group commits spread each one's fixed cost wider.
  const commits = writer1.transactions - writer0.transactions;
  console.log(`group commits: ${commits.toLocaleString()} with writes (${((writer1.writes - writer0.writes) / Math.max(1, commits)).toFixed(1)} writes each, the largest ${writer1.largestBatch} since start), ${(writer1.deleteOnlyTransactions - writer0.deleteOnlyTransactions).toLocaleString()} with the relay's deletes only`);
  console.log(
    table("Per command on the wire (nats-server's view of each connection)", ["connection", "msgs to server", "bytes to server", "msgs from server", "bytes from server"], [...wire1.values()].map((c) => {
      const b = wire0.get(c.cid) ?? { in_msgs: 0, in_bytes: 0, out_msgs: 0, out_bytes: 0 };
      return [c.name ?? String(c.cid), per(c.in_msgs - b.in_msgs), per(c.in_bytes - b.in_bytes), per(c.out_msgs - b.out_msgs), per(c.out_bytes - b.out_bytes)];
    })),
  );
  const rows = [...threads1.entries()]
    .map(([tid, t]) => {
      const b = threads0.get(tid) ?? { cpuNs: 0, waitNs: 0, reads: 0, writes: 0, sleeps: 0 };
      return {
        tid,
        name: t.name,
        start: t.start,
        cpuUs: (t.cpuNs - b.cpuNs) / 1000 / COMMANDS,
        waitUs: (t.waitNs - b.waitNs) / 1000 / COMMANDS,
        reads: (t.reads - b.reads) / COMMANDS,
        writes: (t.writes - b.writes) / COMMANDS,
        sleeps: (t.sleeps - b.sleeps) / COMMANDS,
      };
    })
    .filter((t) => t.cpuUs >= 0.05)
    .sort((a, b) => a.start - b.start || Number(a.tid) - Number(b.tid));
  const total = rows.reduce((s, t) => s + t.cpuUs, 0);
  const sum = (f: (t: (typeof rows)[number]) => number) => rows.reduce((s, t) => s + f(t), 0).toFixed(2);
  console.log(
    table(
      "Per command: CPU and wait for a core (µs), read- and write-type system calls, and sleeps (each a wake-up), this process's threads in the order they were created, and nats-server",
      ["thread", "CPU µs", "run-queue wait µs", "reads", "writes", "sleeps"],
      [
        ...rows.map((t) => [`${t.name}:${t.tid}`, t.cpuUs.toFixed(1), t.waitUs.toFixed(1), t.reads.toFixed(2), t.writes.toFixed(2), t.sleeps.toFixed(2)]),
        ["this process", total.toFixed(1), "", sum((t) => t.reads), sum((t) => t.writes), sum((t) => t.sleeps)],
        ["nats-server", serverUs.toFixed(1), "", "", "", ""],
        ["machine", (total + serverUs).toFixed(1), "", "", "", ""],
      ],
    ),
  );
}

runToEnd(main, { budgetMs: 300_000, cleanup, writeResults: async () => undefined });
