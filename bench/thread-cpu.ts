/** CPU time by thread and by process (Linux /proc): what the service and nats-server really spend per operation. */
import { readdirSync, readFileSync } from "node:fs";

// USER_HZ: the unit of /proc times, 100 on every mainstream Linux build.
const TICKS_PER_SECOND = 100;

/** user + system ms from a /proc stat file, or undefined where /proc is not available. */
function statCpuMs(path: string): number | undefined {
  try {
    const stat = readFileSync(path, "utf8");
    // Fields 14 and 15 (utime, stime, in ticks) counted after the parenthesised command name.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** The main thread's user + system CPU time in ms, or undefined where /proc is not available. */
export function mainThreadCpuMs(): number | undefined {
  return statCpuMs(`/proc/${process.pid}/task/${process.pid}/stat`);
}

/** A process's user + system CPU time in ms, all threads, or undefined where it cannot be read. */
export function processCpuMs(pid: number): number | undefined {
  return statCpuMs(`/proc/${pid}/stat`);
}

/** CPU spent between two readings: this process (all threads), its main thread, and another process (nats-server). */
export interface CpuSpent {
  processMs: number;
  mainThreadMs: number | undefined;
  serverMs: number | undefined;
}

/** Starts measuring; the returned function gives the CPU spent since. */
export function cpuMeter(serverPid: number | undefined): () => CpuSpent {
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuMs();
  const server0 = serverPid === undefined ? undefined : processCpuMs(serverPid);
  return () => {
    const cpu = process.cpuUsage(cpu0);
    const main1 = mainThreadCpuMs();
    const server1 = serverPid === undefined ? undefined : processCpuMs(serverPid);
    return {
      processMs: (cpu.user + cpu.system) / 1000,
      mainThreadMs: main0 !== undefined && main1 !== undefined ? main1 - main0 : undefined,
      serverMs: server0 !== undefined && server1 !== undefined ? server1 - server0 : undefined,
    };
  };
}

/** CPU ms of each thread of a process so far, summed by thread name, or by name and id (Linux /proc; empty elsewhere). */
export function threadCpuByName(pid: number = process.pid, byTid = false): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const ms = statCpuMs(`/proc/${pid}/task/${tid}/stat`);
    if (ms === undefined) continue;
    let name = "?";
    try {
      name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
    } catch {
      // gone meanwhile
    }
    if (tid === String(pid)) name = "main";
    const key = byTid ? `${name}:${tid}` : name;
    out.set(key, (out.get(key) ?? 0) + ms);
  }
  return out;
}

/** What each thread name spent between two {@link threadCpuByName} readings. */
export function threadCpuSpent(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, ms] of after) out.set(name, ms - (before.get(name) ?? 0));
  return out;
}

/** What a process has done so far that costs a wake-up here: its threads' sleeps and its write system calls. */
export interface ProcessCounters {
  /** CPU ms, all threads. */
  cpuMs: number;
  /** Times its threads gave up the CPU to wait (voluntary context switches, summed over its threads). */
  sleeps: number;
  /** Times its threads were taken off the CPU (involuntary context switches). */
  preempted: number;
  /** write(2)-like system calls (/proc/<pid>/io syscw): a socket write that wakes its reader is one. */
  writes: number;
}

/**
 * {@link ProcessCounters} of `pid` (Linux /proc; undefined where it cannot be read). This process's context
 * switches come from getrusage, which keeps those of its threads that have ended (a write worker closed
 * before the reading); another process's are summed over the threads it has now.
 */
export function processCounters(pid: number): ProcessCounters | undefined {
  const cpuMs = processCpuMs(pid);
  if (cpuMs === undefined) return undefined;
  let sleeps = 0;
  let preempted = 0;
  let writes = 0;
  try {
    if (pid === process.pid) {
      const usage = process.resourceUsage();
      sleeps = usage.voluntaryContextSwitches;
      preempted = usage.involuntaryContextSwitches;
    }
    for (const tid of pid === process.pid ? [] : readdirSync(`/proc/${pid}/task`)) {
      try {
        const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
        sleeps += Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? 0);
        preempted += Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? 0);
      } catch {
        // a thread gone meanwhile
      }
    }
    writes = Number(/^syscw:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"))?.[1] ?? 0);
  } catch {
    return undefined;
  }
  return { cpuMs, sleeps, preempted, writes };
}

/** Starts counting for each pid; the returned function gives what each did since, per `per` operations (undefined where unreadable). */
export function countersMeter(pids: readonly number[]): (per: number) => (ProcessCounters | undefined)[] {
  const before = pids.map(processCounters);
  return (per) =>
    pids.map((pid, i) => {
      const a = before[i];
      const b = processCounters(pid);
      if (!a || !b) return undefined;
      return { cpuMs: (b.cpuMs - a.cpuMs) / per, sleeps: (b.sleeps - a.sleeps) / per, preempted: (b.preempted - a.preempted) / per, writes: (b.writes - a.writes) / per };
    });
}
