/**
 * How many WebSockets one gateway may hold: each is a file descriptor, and a process out of descriptors
 * fails more than its next upgrade — uWS's accept then fails again at once on every turn of its loop (a
 * core spinning while the limit lasts), and the NATS client, the database and the logs can open nothing.
 * So the gateway refuses upgrades (503, Retry-After) before that: by default at the process's descriptor
 * limit less a reserve for everything else (a tenth of it, at least 256), never fewer than 16 sockets.
 */
import { readFileSync } from "node:fs";

/** The soft limit of open files of this process (`Max open files` in /proc/self/limits; Node raises it to the hard limit at start), or undefined where it cannot be read. */
export function openFilesLimit(limits = "/proc/self/limits"): number | undefined {
  try {
    const line = readFileSync(limits, "utf8").split("\n").find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    if (soft === undefined) return undefined;
    if (soft === "unlimited") return Number.MAX_SAFE_INTEGER;
    const n = Number(soft);
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The default budget of sockets of this process: {@link socketBudgetFor} its descriptor limit. */
export function defaultSocketBudget(): number {
  return socketBudgetFor(openFilesLimit());
}

/** The budget of sockets for a descriptor limit (10,000 where the limit is unknown). */
export function socketBudgetFor(limit: number | undefined): number {
  if (limit === undefined) return 10_000;
  return Math.max(16, limit - Math.max(256, Math.ceil(limit / 10)));
}
