import { describe, expect, it, vi } from "vitest";
import { heapAfterMajorGc } from "../../src/app/gc-floor.js";
import { collector } from "../../bench/gc.js";

describe("heap used after the latest major collection", () => {
  it("reads the live heap right after a major collection, without the garbage before it", async () => {
    const figures = heapAfterMajorGc();
    expect(heapAfterMajorGc()).toBe(figures); // one observer per process
    let garbage: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i }));
    const gone = new WeakRef(garbage);
    const withGarbage = process.memoryUsage().heapUsed;
    garbage = undefined;
    // A WeakRef keeps its target alive to the end of the turn that made it: collect on the next.
    await new Promise((r) => setImmediate(r));
    collector().gc();
    expect(gone.deref(), "the garbage was collected").toBeUndefined();
    // Observers are told after the collection, on a later turn of the event loop: until then the figure is 0.
    await vi.waitFor(() => {
      expect(figures.heapUsed).toBeGreaterThan(0);
      expect(figures.heapUsed).toBeLessThan(withGarbage);
    });
  });
});
