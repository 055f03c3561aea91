import { describe, expect, it } from "vitest";
import { heapAfterMajorGc } from "../../src/app/gc-floor.js";
import { collector } from "../../bench/gc.js";

describe("heap used after the latest major collection", () => {
  it("reads the live heap right after a major collection, without the garbage before it", async () => {
    const figures = heapAfterMajorGc();
    expect(heapAfterMajorGc()).toBe(figures); // one observer per process
    let garbage: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i }));
    const withGarbage = process.memoryUsage().heapUsed;
    garbage = undefined;
    collector().gc();
    await new Promise((r) => setTimeout(r, 50)); // observers are told after the collection
    expect(garbage).toBeUndefined();
    expect(figures.heapUsed).toBeGreaterThan(0);
    expect(figures.heapUsed).toBeLessThan(withGarbage);
  });
});
