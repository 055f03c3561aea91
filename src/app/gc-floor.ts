/**
 * Heap used right after the latest major (mark-compact) collection. Heap used sampled at an
 * arbitrary moment includes whatever garbage has piled up since the last collection (a saw-tooth of
 * 100+ MiB under load); read right after a major collection it shows what is live, which is what a
 * soak judges for leaks. (RSS read at that moment is no better: the freed pages go back to the
 * system a while later.)
 */
import { PerformanceObserver, constants } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";

let latest: { heapUsed: number } | undefined;

/** Heap used in bytes right after the latest major collection (0 before the first); the first call starts watching collections (one observer per process, for its lifetime). */
export function heapAfterMajorGc(): { readonly heapUsed: number } {
  if (latest) return latest;
  const figures = { heapUsed: 0 };
  latest = figures;
  new PerformanceObserver((list) => {
    // A gc entry's `detail` (Node ≥ 16) names the kind of collection; @types/node 20 leaves it out.
    if (list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) {
      // V8's own figure: process.memoryUsage() also reads the RSS from /proc, which throws when the process is
      // out of file descriptors (EMFILE), and a throw here, in an observer's callback, ended the process.
      figures.heapUsed = getHeapStatistics().used_heap_size;
    }
  }).observe({ entryTypes: ["gc"] });
  return figures;
}
