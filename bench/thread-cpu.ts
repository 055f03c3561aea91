/** CPU time of the main thread alone (Linux): what the service's event loop really costs per command. */
import { readFileSync } from "node:fs";

// USER_HZ: the unit of /proc times, 100 on every mainstream Linux build.
const TICKS_PER_SECOND = 100;

/** The main thread's user + system CPU time in ms, or undefined where /proc is not available. */
export function mainThreadCpuMs(): number | undefined {
  try {
    // /proc/<pid>/task/<pid>/stat is the main thread; fields 14 and 15 (after the command) are utime and stime in ticks.
    const stat = readFileSync(`/proc/${process.pid}/task/${process.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}
