/** A handle on V8's collector, so heap figures are of live objects only. */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** How the collector was reached: `--expose-gc`, enabled at run time, or not at all. */
export type GcAccess = "flag" | "runtime" | "unavailable";

/** Returns a full-collection function; without `--expose-gc` it enables the flag at run time (a V8 flag set before the first new context). */
export function collector(): { gc: () => void; access: GcAccess } {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return { gc: existing, access: "flag" };
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as (() => void) | undefined;
    if (typeof gc === "function") return { gc, access: "runtime" };
  } catch {
    // fall through: measured without collection, and said so
  }
  return { gc: () => undefined, access: "unavailable" };
}

/** Collects until the heap stops shrinking (weak callbacks and finalizers need more than one pass). */
export async function settleHeap(gc: () => void): Promise<number> {
  let last = Infinity;
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
    const used = process.memoryUsage().heapUsed;
    if (used >= last - 64 * 1024) return used;
    last = used;
  }
  return process.memoryUsage().heapUsed;
}
