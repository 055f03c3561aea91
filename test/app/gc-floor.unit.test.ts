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

describe("out of file descriptors", () => {
  it("a major collection's reading survives EMFILE (process.memoryUsage() threw there, from an observer's callback: the end of the process)", async () => {
    const { spawnSync } = await import("node:child_process");
    const script = `
      import { openSync } from "node:fs";
      import { heapAfterMajorGc } from "./src/app/gc-floor.ts";
      const figures = heapAfterMajorGc();
      const held = [];
      try { for (;;) held.push(openSync("/dev/null", "r")); } catch (err) { if (err.code !== "EMFILE") throw err; }
      globalThis.gc();
      setTimeout(() => { console.log(JSON.stringify({ heapUsed: figures.heapUsed, held: held.length })); }, 200);
    `;
    const r = spawnSync("prlimit", ["--nofile=64:64", "--", process.execPath, "--expose-gc", "--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", cwd: `${__dirname}/../..`, timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { heapUsed: number; held: number };
    expect(out.held).toBeGreaterThan(0);
    expect(out.heapUsed).toBeGreaterThan(0);
  });
});
