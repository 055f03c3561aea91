/**
 * The Nerve processes of the cluster bench — each a service process of its own (bench/cluster-node.ts:
 * what `npm start` runs, loaded ahead as a standby), told apart by NERVE_INSTANCE_ID — the CPU time of
 * any set of processes from /proc, and a scrape of an instance's /metrics.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { exited, gone as goneChild, killOnExit, terminate } from "../test/support/children.js";
import { SERVICE_NODE_FLAGS, serviceProcessEnv } from "../test/support/service-process.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const OUTPUT_TAIL = 16_000;
// USER_HZ: the unit of /proc times, 100 on every mainstream Linux build.
const TICKS_PER_SECOND = 100;

/** What the service said about itself while starting. */
export interface NodeFacts {
  /** The HTTP port of its gateway, health and metrics (undefined without the gateway role). */
  httpPort?: number;
  /** How commands reach owners: the server's mapping or forwarding (undefined without the commands role). */
  routing?: string;
  /** Whether its group commits check fences (false: the startNerve hook gave it sole ownership). */
  fenced?: boolean;
}

/** One running Nerve process. */
export interface NodeProcess {
  readonly id: string;
  readonly pid: number;
  readonly facts: NodeFacts;
  /** Milliseconds from "start" on stdin to "bench node ready": Nerve's own start, modules already loaded. */
  readonly startMs: number;
  readonly exited: boolean;
  output(): string;
  /** SIGTERM (orderly shutdown, a graceful hand-off); resolves with the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
  /** SIGKILL: a crash at an arbitrary moment. */
  kill9(): Promise<void>;
}

/** A loaded, idle service process (bench/cluster-node.ts with BENCH_NODE_STANDBY=1) waiting for its environment. */
export interface Standby {
  readonly pid: number;
  /** Resolves once every module is loaded (milliseconds since spawn). */
  readonly loaded: Promise<number>;
  /** Starts Nerve in it with `env` (NERVE_INSTANCE_ID = `id`); resolves once it logged "bench node ready". */
  activate(id: string, env: Record<string, string>, readyTimeoutMs?: number): Promise<NodeProcess>;
  /** SIGKILL, for cleanup. */
  kill(): Promise<void>;
}

/** Spawns a standby service process; its environment (beyond this process's) comes later, at {@link Standby.activate}. */
export function spawnStandby(): Standby {
  const t0 = performance.now();
  let output = "";
  let pending = "";
  const facts: NodeFacts = {};
  let onLoaded!: (ms: number) => void;
  let onReady!: () => void;
  const loaded = new Promise<number>((r) => (onLoaded = r));
  const ready = new Promise<void>((r) => (onReady = r));
  const child: ChildProcess = spawn(process.execPath, [...SERVICE_NODE_FLAGS, "--import", "tsx", "bench/cluster-node.ts"], {
    cwd: root,
    env: { ...process.env, ...serviceProcessEnv(), BENCH_NODE_STANDBY: "1", LOG_LEVEL: "info" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  killOnExit(child);
  const line = (text: string) => {
    if (!text.startsWith("{")) return;
    let m: { msg?: string; http_port?: number; routing?: string; bench_fenced?: boolean };
    try {
      m = JSON.parse(text) as typeof m;
    } catch {
      return;
    }
    if (m.routing !== undefined) facts.routing = m.routing;
    if (m.msg === "nerve started" && typeof m.http_port === "number" && m.http_port > 0) facts.httpPort = m.http_port;
    if (m.msg === "bench node loaded") onLoaded(performance.now() - t0);
    if (m.msg === "bench node ready") {
      facts.fenced = m.bench_fenced;
      onReady();
    }
  };
  // BENCH_NODE_LOGS=<dir>: every process's whole output, in <dir>/<pid>.log (timestamps of a hand-off, say).
  const logDir = process.env.BENCH_NODE_LOGS;
  const keepAll = (chunk: Buffer) => logDir && appendFileSync(join(logDir, `${child.pid}.log`), chunk);
  child.stdout?.on("data", (chunk: Buffer) => {
    keepAll(chunk);
    const s = chunk.toString();
    output = (output + s).slice(-OUTPUT_TAIL);
    pending += s;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      line(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    keepAll(chunk);
    output = (output + chunk.toString()).slice(-OUTPUT_TAIL);
  });
  child.once("error", (err) => {
    output += `\nspawn error: ${err.message}`;
  });
  // A standby that dies before it is used makes `loaded` fail, so nobody waits on it forever.
  const died = exited(child).then(() => {
    throw new Error(`service process ${child.pid} exited (${child.exitCode ?? child.signalCode}):\n${output}`);
  });
  died.catch(() => undefined);
  const gone = () => goneChild(child);
  const kill9 = async () => {
    if (!gone()) child.kill("SIGKILL");
    await exited(child);
  };
  const loadedOrDied = Promise.race([loaded, died]);
  loadedOrDied.catch(() => undefined);
  return {
    get pid() {
      return child.pid ?? -1;
    },
    loaded: loadedOrDied,
    kill: kill9,
    async activate(id, env, readyTimeoutMs = 30_000) {
      await Promise.race([loaded, died]);
      const t1 = performance.now();
      child.stdin?.write(`${JSON.stringify({ ...env, NERVE_INSTANCE_ID: id })}\n`);
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          ready,
          died,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${id} did not start within ${readyTimeoutMs} ms:\n${output}`)), readyTimeoutMs);
          }),
        ]);
      } catch (err) {
        await kill9();
        throw err;
      } finally {
        clearTimeout(timer);
      }
      const startMs = performance.now() - t1;
      return {
        id,
        get pid() {
          return child.pid ?? -1;
        },
        facts,
        startMs,
        get exited() {
          return gone();
        },
        output: () => output,
        stop: (timeoutMs = 20_000) => terminate(child, timeoutMs),
        kill9,
      };
    },
  };
}

/** user + system CPU ms of a process (all its threads), or undefined once it is gone. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields 14 and 15 (utime, stime, in ticks) counted after the parenthesised command name.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** CPU ms spent by each of a set of processes between two readings, by label. */
export interface CpuDelta {
  byLabel: Record<string, number>;
  totalMs: number;
}

/**
 * Starts measuring the named processes; the returned function reads them again (with `extra`
 * processes first seen at the end, whose whole CPU time counts) and gives what each spent since.
 * A process that exited in between counts for nothing.
 */
export function cpuWindow(pids: Record<string, number>): (extra?: Record<string, number>) => CpuDelta {
  const before = new Map(Object.entries(pids).map(([label, pid]) => [label, { pid, ms: processCpuMs(pid) }]));
  return (extra = {}) => {
    const byLabel: Record<string, number> = {};
    for (const [label, b] of before) {
      const now = processCpuMs(b.pid);
      byLabel[label] = now !== undefined && b.ms !== undefined ? now - b.ms : 0;
    }
    for (const [label, pid] of Object.entries(extra)) if (!before.has(label)) byLabel[label] = processCpuMs(pid) ?? 0;
    return { byLabel, totalMs: Object.values(byLabel).reduce((a, b) => a + b, 0) };
  };
}

/** Reads a Prometheus text page and sums the samples of each named metric (labels ignored unless given). */
export async function scrapeMetrics(port: number | undefined, names: string[]): Promise<Record<string, number> | undefined> {
  if (port === undefined) return undefined;
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    const out: Record<string, number> = {};
    for (const name of names) {
      const [metric, label] = name.split("|") as [string, string | undefined];
      let sum = 0;
      for (const l of text.split("\n")) {
        if (!l.startsWith(metric)) continue;
        const rest = l.slice(metric.length);
        if (rest[0] !== " " && rest[0] !== "{") continue;
        if (label !== undefined && !rest.includes(label)) continue;
        sum += Number(l.slice(l.lastIndexOf(" ") + 1)) || 0;
      }
      out[name] = sum;
    }
    return out;
  } catch {
    return undefined;
  }
}
