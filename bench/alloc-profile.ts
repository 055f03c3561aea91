/**
 * Where a load's allocations come from: V8's sampling heap profiler through the inspector, counting
 * objects the collector has already freed too (most of a command's allocations live for microseconds,
 * and their rate is what sets how often the young generation is scavenged). Prints bytes per operation by
 * allocating function (self) and by file (inclusive), and writes the profile (open it in Chrome's DevTools).
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/**
 * Starts sampling (every 4 KiB allocated, on average); the returned function stops, prints the top sites
 * and writes the profile. With `BENCH_ALLOC_PROMOTED=1` only objects no scavenge freed are counted:
 * what was promoted (or is still alive), the allocations that make scavenges slow.
 */
export async function startAllocationProfile(): Promise<(file: string, operations: number) => Promise<void>> {
  const s = new Session();
  s.connect();
  await s.post("HeapProfiler.enable");
  await s.post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: process.env.BENCH_ALLOC_PROMOTED !== "1" } as never);
  return async (file: string, operations: number) => {
    const { profile } = (await s.post("HeapProfiler.stopSampling")) as unknown as { profile: { head: ProfileNode } };
    s.disconnect();
    const self = new Map<string, number>();
    const incl = new Map<string, number>();
    const walk = (n: ProfileNode, stack: Set<string>): number => {
      const key = `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").slice(-2).join("/")}:${n.callFrame.lineNumber}`;
      self.set(key, (self.get(key) ?? 0) + n.selfSize);
      let total = n.selfSize;
      const fileKey = n.callFrame.url.split("/").slice(-2).join("/") || "(native)";
      const seen = stack.has(fileKey);
      const next = new Set(stack);
      next.add(fileKey);
      for (const c of n.children) total += walk(c, next);
      if (!seen) incl.set(fileKey, (incl.get(fileKey) ?? 0) + total);
      return total;
    };
    const total = walk(profile.head, new Set());
    writeFileSync(file, JSON.stringify(profile));
    const per = (v: number) => Math.round(v / operations);
    console.log(`\n== Allocations (sampled; ${file}): ${per(total)} B per operation`);
    console.log("by allocating function (self), B per operation:");
    for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${per(v)}\t${k}`);
    console.log("by file (inclusive), B per operation:");
    for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${per(v)}\t${k}`);
  };
}
