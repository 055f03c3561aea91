/**
 * Gives V8's old space back when it has fragmented: the periodic compaction of a long-running service.
 *
 * Under load, objects that outlive two scavenges (commands in flight, events awaiting their ack, actor
 * states replaced one command at a time, the gateway's resume entries) are promoted and die in the old
 * space, scattered among long-lived ones. V8's regular mark-compact only evacuates pages that are
 * mostly empty, a few MiB per collection, so the pages in between stay half used: a 60-minute soak held
 * 297–382 MiB of old space committed with up to 170 MiB free inside it while the live heap stayed flat,
 * and RSS crept by 9 MiB per 10 minutes. Compacting on every major collection flattened RSS but cost a
 * quarter more CPU per request.
 *
 * This compacts now and then instead: every `everyMs` it reads the old space, and when at least
 * `minFreeBytes` and `minFreeShare` of it are free it turns V8's `--compact-on-every-full-gc` on until a
 * major collection has compacted (the free share fell below half the threshold), at most `maxMajors`
 * collections or `timeoutMs`, then off again. The collections themselves come when V8 wants them; one
 * compacting collection is a longer pause (0.5 s for ~160 MiB live on the 2-core bench machine), which
 * is the price, paid once per interval at most. The idea is that of the JVM's periodic collection that
 * returns unused committed memory (JEP 346). V8 reads the flag at the start of each collection's
 * marking; Node leaves flags writable after start-up (`--no-freeze-flags-after-init`).
 */
import { PerformanceObserver, constants } from "node:perf_hooks";
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";
import type { Logger } from "pino";

/** The old space as V8 reports it, in bytes. */
export interface OldSpace {
  committed: number;
  used: number;
  free: number;
}

/** Reads V8's old space. */
export function oldSpace(): OldSpace {
  const s = getHeapSpaceStatistics().find((x) => x.space_name === "old_space");
  const committed = s?.space_size ?? 0;
  const used = s?.space_used_size ?? 0;
  return { committed, used, free: Math.max(0, committed - used) };
}

/** When the compactor acts. */
export interface HeapCompactorOptions {
  /** How often the old space is read; at most one compaction per interval. */
  everyMs: number;
  /** Free bytes inside the old space below which nothing happens. */
  minFreeBytes: number;
  /** Free share (0–1) of the committed old space below which nothing happens. */
  minFreeShare: number;
  /** Most major collections to keep the flag on for (the first may have started its marking before). */
  maxMajors: number;
  /** Longest time to keep the flag on, waiting for V8 to collect. */
  timeoutMs: number;
  logger?: Logger;
}

/** What the compactor has done, for metrics. */
export interface HeapCompactorStats {
  /** Compactions finished (the free share fell), and those given up (collections or time ran out). */
  compactions: number;
  givenUp: number;
  /** Old space given back over all compactions (committed before less committed after). */
  freedBytes: number;
  /** The longest major collection's pause while armed, over all compactions. */
  longestPauseMs: number;
}

/** Process-wide figures: one compactor per process. */
export const heapCompactorStats: HeapCompactorStats = { compactions: 0, givenUp: 0, freedBytes: 0, longestPauseMs: 0 };

const COMPACT_FLAG = "--compact-on-every-full-gc";

/** Defaults for a service: read every 5 minutes, act at 64 MiB and a quarter of the old space free. */
export const HEAP_COMPACTOR_DEFAULTS: Omit<HeapCompactorOptions, "everyMs" | "logger"> = {
  minFreeBytes: 64 * 2 ** 20,
  minFreeShare: 0.25,
  maxMajors: 3,
  timeoutMs: 120_000,
};

/** Periodic compaction of the old space; {@link start} once per process. */
export class HeapCompactor {
  readonly #opts: HeapCompactorOptions;
  #timer: NodeJS.Timeout | undefined;
  #observer: PerformanceObserver | undefined;
  #armed: { before: OldSpace; majors: number; pauseMs: number; timeout: NodeJS.Timeout } | undefined;

  constructor(opts: HeapCompactorOptions) {
    this.#opts = opts;
  }

  /** Whether the flag is on now. */
  get armed(): boolean {
    return this.#armed !== undefined;
  }

  /** Starts reading the old space every `everyMs`. */
  start(): void {
    if (this.#timer) return;
    this.#observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        // A gc entry's `detail` (Node ≥ 16) names the kind of collection; @types/node 20 leaves it out.
        if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) this.#majorCollected(e.duration);
      }
    });
    this.#observer.observe({ entryTypes: ["gc"] });
    this.#timer = setInterval(() => this.check(), this.#opts.everyMs);
    this.#timer.unref();
  }

  /** Stops, turning the flag off if it is on. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#observer?.disconnect();
    this.#observer = undefined;
    if (this.#armed) this.#disarm(false);
  }

  /** Reads the old space and arms when enough of it is free; returns whether it armed. */
  check(): boolean {
    if (this.#armed) return false;
    const before = oldSpace();
    const { minFreeBytes, minFreeShare, timeoutMs } = this.#opts;
    if (before.free < minFreeBytes || before.free < minFreeShare * before.committed) return false;
    setFlagsFromString(COMPACT_FLAG);
    const timeout = setTimeout(() => this.#disarm(false), timeoutMs);
    timeout.unref();
    this.#armed = { before, majors: 0, pauseMs: 0, timeout };
    this.#opts.logger?.debug({ committed_mib: mib(before.committed), free_mib: mib(before.free) }, "heap: old space fragmented, compacting at the next major collection");
    return true;
  }

  #majorCollected(durationMs: number): void {
    const a = this.#armed;
    if (!a) return;
    a.majors++;
    a.pauseMs = Math.max(a.pauseMs, durationMs);
    const now = oldSpace();
    if (now.free < (this.#opts.minFreeShare / 2) * now.committed) this.#disarm(true);
    else if (a.majors >= this.#opts.maxMajors) this.#disarm(false);
  }

  #disarm(compacted: boolean): void {
    const a = this.#armed;
    if (!a) return;
    setFlagsFromString(`--no-${COMPACT_FLAG.slice(2)}`);
    clearTimeout(a.timeout);
    this.#armed = undefined;
    const after = oldSpace();
    const freed = Math.max(0, a.before.committed - after.committed);
    heapCompactorStats.longestPauseMs = Math.max(heapCompactorStats.longestPauseMs, a.pauseMs);
    if (compacted) {
      heapCompactorStats.compactions++;
      heapCompactorStats.freedBytes += freed;
    } else heapCompactorStats.givenUp++;
    this.#opts.logger?.info(
      { compacted, collections: a.majors, longest_pause_ms: Math.round(a.pauseMs), committed_mib: [mib(a.before.committed), mib(after.committed)], free_mib: [mib(a.before.free), mib(after.free)] },
      compacted ? "heap: old space compacted" : "heap: no compacting collection came; trying again later",
    );
  }
}

/**
 * Starts the process's compactor every `everyMs` (0: never). Not when the process already compacts on
 * every collection (started with the flag): the compactor would turn it off.
 */
export function startHeapCompactor(everyMs: number, logger?: Logger): HeapCompactor | undefined {
  if (everyMs <= 0 || process.execArgv.includes(COMPACT_FLAG)) return undefined;
  const c = new HeapCompactor({ ...HEAP_COMPACTOR_DEFAULTS, everyMs, logger });
  c.start();
  return c;
}

function mib(bytes: number): number {
  return Math.round((bytes / 2 ** 20) * 10) / 10;
}
