/**
 * What paused the main thread during a phase of a bench: the event loop's delay (how late a timer every
 * 1 ms ran) and V8's collections (count and time by kind, the longest). A tail of a few milliseconds on
 * an idle machine is one of these or a wait outside the process (the disk, the other thread).
 */
import { monitorEventLoopDelay, PerformanceObserver, constants, type PerformanceEntry } from "node:perf_hooks";

/** Figures of one phase. */
export interface Pauses {
  loopDelayP50Ms: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Collections by kind: count, total ms, longest ms. */
  gc: Record<string, { count: number; totalMs: number; maxMs: number }>;
}

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "scavenge",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "mark-compact",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weak callbacks",
};

/** Starts watching; `stop()` ends it and returns what it saw. `loop: false` leaves the event loop's delay out (its 1 ms timer wakes the thread): collections only, the delays 0. */
export function watchPauses(o: { loop?: boolean } = {}): { stop: () => Pauses } {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  if (o.loop !== false) loop.enable();
  const gc: Pauses["gc"] = {};
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
      const kind = KINDS[e.detail?.kind ?? -1] ?? "other";
      const k = (gc[kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
      k.count++;
      k.totalMs += e.duration;
      k.maxMs = Math.max(k.maxMs, e.duration);
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return {
    stop: () => {
      loop.disable();
      observer.disconnect();
      const ms = (ns: number) => Math.round(ns / 1e4) / 100;
      if (o.loop === false) return { loopDelayP50Ms: 0, loopDelayP99Ms: 0, loopDelayMaxMs: 0, gc };
      return { loopDelayP50Ms: ms(loop.percentile(50)), loopDelayP99Ms: ms(loop.percentile(99)), loopDelayMaxMs: ms(loop.max), gc };
    },
  };
}

/** One line per kind of collection, for a table. */
export function gcSummary(p: Pauses): string {
  const r = (x: number) => Math.round(x * 100) / 100;
  return Object.entries(p.gc).map(([k, v]) => `${k} ${v.count}× ${r(v.totalMs)} ms (max ${r(v.maxMs)})`).join("; ") || "none";
}
