/**
 * An optional CPU profile of one bench phase (`BENCH_CPU_PROFILE=<file>`), for chrome://inspect or
 * speedscope; with the phase's operation count, also a summary of the thread's time per operation by
 * where the code comes from (Nerve's directories, each library, Node's internals, V8's own).
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Profiles `fn` into `file` (when given) at a 1 ms sampling interval (`BENCH_CPU_PROFILE_INTERVAL_US` another, e.g. 100 to see
 * the main thread's short busy spells); returns what `fn` returns. With
 * `operations` (told `fn`'s result), prints the profile's summary ({@link profileSummary}).
 */
export async function profiled<T>(file: string | undefined, fn: () => Promise<T>, operations?: (result: T) => number): Promise<T> {
  if (!file) return fn();
  const session = new Session();
  session.connect();
  try {
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 1000) });
    await session.post("Profiler.start");
    const result = await fn();
    const { profile } = await session.post("Profiler.stop");
    await writeFile(file, JSON.stringify(profile));
    if (operations) console.log(profileSummary(profile as unknown as Profile, operations(result), file));
    return result;
  } finally {
    session.disconnect();
  }
}

// Where a sampled function's code comes from.
function origin(frame: ProfileNode["callFrame"]): string {
  const { url, functionName: f } = frame;
  if (f === "(garbage collector)") return "V8: garbage collection (this thread's share)";
  if (f === "(program)") return "V8: (program), native code outside JS";
  const lib = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (lib) return `library ${lib[1]}`;
  const own = /\/(src\/[^/]+|contracts|actors)\//.exec(url);
  if (own) return `Nerve ${own[1]}/`;
  if (url.startsWith("node:") || url.startsWith("internal/") || /^[a-z_/]+$/.test(url)) return "Node's internals (streams, timers, buffers, workers)";
  if (url === "") return `native ${f || "(anonymous)"}`;
  return "other";
}

/**
 * The thread's busy time per operation (µs) by origin, most first, and its idle share: what a phase's
 * operations cost by component. Native functions (system calls behind Node's bindings, JSON, the
 * collections) are listed by name when they take 1 % or more.
 */
export function profileSummary(profile: Profile, operations: number, file: string): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const spent = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    if (!node || node.callFrame.functionName === "(idle)") {
      idle += us;
      continue;
    }
    const key = origin(node.callFrame);
    spent.set(key, (spent.get(key) ?? 0) + us);
  }
  const busy = total - idle;
  const rows = [...spent].sort((a, b) => b[1] - a[1]);
  const grouped = new Map<string, number>();
  for (const [k, us] of rows) {
    const key = k.startsWith("native ") && us < busy / 100 ? "native, each under 1 %" : k;
    grouped.set(key, (grouped.get(key) ?? 0) + us);
  }
  const lines = [...grouped].sort((a, b) => b[1] - a[1]).map(([k, us]) => `  ${(us / operations).toFixed(1).padStart(7)}  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${k}`);
  return [`\n== CPU profile (${file}): ${(total / 1e6).toFixed(2)} s sampled, ${((100 * busy) / Math.max(1, total)).toFixed(0)} % busy; busy µs per operation (${operations}) by origin`, ...lines].join("\n");
}
