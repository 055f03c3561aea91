/** An optional CPU profile of one bench phase (`BENCH_CPU_PROFILE=<file>`), for chrome://inspect or speedscope. */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";

/** Profiles `fn` into `file` (when given) at a 1 ms sampling interval; returns what `fn` returns. */
export async function profiled<T>(file: string | undefined, fn: () => Promise<T>): Promise<T> {
  if (!file) return fn();
  const session = new Session();
  session.connect();
  try {
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 1000 });
    await session.post("Profiler.start");
    const result = await fn();
    const { profile } = await session.post("Profiler.stop");
    await writeFile(file, JSON.stringify(profile));
    return result;
  } finally {
    session.disconnect();
  }
}
