/** Child processes of a test run: killed if the run dies before its cleanup, and awaited when they exit. */
import type { ChildProcess } from "node:child_process";

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

/** Kills `child` (SIGKILL) if this process exits while it still runs: no server left holding a port. */
export function killOnExit(child: ChildProcess): void {
  live.add(child);
  child.once("exit", () => live.delete(child));
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Whether `child` has exited (or never started). */
export const gone = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null || child.pid === undefined;

/** SIGTERM (an orderly shutdown), SIGKILL after `timeoutMs`; resolves with the exit code once `child` is gone. */
export async function terminate(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (!gone(child)) child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited(child);
  clearTimeout(timer);
  return child.exitCode;
}
