/** The persistence layer's threads (the write worker, the query thread): their young generation, their heap. */
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from "node:v8";
import type { Worker } from "node:worker_threads";

/** Semi-space of a worker thread's young generation, MiB: each allocates little, and what it allocates dies young. */
export const WORKER_SEMI_SPACE_MB = 8;

/** The process's V8 flags, NODE_OPTIONS' first and then its own (a later one wins over an earlier one). */
function processFlags(argv: readonly string[], nodeOptions: string): string[] {
  return [...nodeOptions.split(/\s+/), ...argv];
}

/** The process's `--max-semi-space-size` (MiB) from its flags or NODE_OPTIONS, the last one given; undefined without one. */
export function processSemiSpaceMb(argv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ""): number | undefined {
  let mb: number | undefined;
  for (const arg of processFlags(argv, nodeOptions)) {
    const m = /^--max[-_]semi[-_]space[-_]size=(\d+)$/.exec(arg);
    if (m) mb = Number(m[1]);
  }
  return mb;
}

/** Whether the process was started with `--expose-gc` (its flags or NODE_OPTIONS), the last of it and `--no-expose-gc` winning. */
export function processExposesGc(argv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ""): boolean {
  let exposed = false;
  for (const arg of processFlags(argv, nodeOptions)) {
    if (/^--expose[-_]gc$/.test(arg)) exposed = true;
    else if (/^--no[-_]expose[-_]gc$/.test(arg)) exposed = false;
  }
  return exposed;
}

/**
 * Starts a worker with V8 flags of its own: a young generation of its own size, and `gc()` when asked. V8's heap flags are the whole process's, and a
 * Worker's `resourceLimits` do not override them: the service's `--max-semi-space-size=64`, sized for
 * the main thread's allocation rate, gave the write worker a young generation of 128 MiB committed for
 * about 13 MiB used (the soak's `nerve_sqlite_writer_heap_bytes{space="new_space"}`). V8 reads the flag
 * when an isolate is made, so it is lowered until the new thread runs JavaScript, then put back; the
 * main isolate's heap, configured at start, is not touched. `exposeGc` gives the new thread `gc()` the same
 * way (a flag V8 reads as it makes the thread's context).
 */
export function withWorkerFlags(start: () => Worker, opts: { exposeGc?: boolean } = {}): Worker {
  const set: string[] = [];
  const back: string[] = [];
  const mainMb = processSemiSpaceMb();
  if (mainMb !== undefined && mainMb > WORKER_SEMI_SPACE_MB) {
    set.push(`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`);
    back.push(`--max-semi-space-size=${mainMb}`);
  }
  // `gc()` in the new thread (the query thread's own collections); not left exposed to threads started later.
  if (opts.exposeGc && !processExposesGc()) {
    set.push("--expose-gc");
    back.push("--no-expose-gc");
  }
  if (set.length === 0) return start();
  for (const flag of set) setFlagsFromString(flag);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    for (const flag of back) setFlagsFromString(flag);
  };
  try {
    const worker = start();
    worker.once("online", restore);
    worker.once("error", restore);
    worker.once("exit", restore);
    return worker;
  } catch (err) {
    restore();
    throw err;
  }
}

/** A thread's V8 heap (each isolate has its own: process.memoryUsage's heap figures are the calling thread's). */
export interface WorkerHeap {
  heapTotal: number;
  heapUsed: number;
  external: number;
  /** By V8 space (new_space, old_space, code_space, …): committed and used bytes. */
  spaces: Record<string, { size: number; used: number }>;
}

/** The calling thread's {@link WorkerHeap}. */
export function thisThreadHeap(): WorkerHeap {
  // V8's figures, not process.memoryUsage(), which also reads the RSS from /proc and throws out of file descriptors.
  const { total_heap_size: heapTotal, used_heap_size: heapUsed, external_memory: external } = getHeapStatistics();
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, { size: sp.space_size, used: sp.space_used_size }]));
  return { heapTotal, heapUsed, external, spaces };
}
