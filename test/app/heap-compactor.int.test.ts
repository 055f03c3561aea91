import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { startHeapCompactor } from "../../src/app/heap-compactor.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

interface ChurnReport {
  stats: { compactions: number; givenUp: number; freedBytes: number; longestPauseMs: number };
  armedAfterStop: boolean;
  maxFreeShareAfterStop: number;
  logs: Array<{ msg: string; compacted?: boolean; committed_mib?: [number, number]; free_mib?: [number, number] }>;
}

describe("heap compactor", () => {
  it("compacts a fragmented old space once, gives the pages back, and leaves V8's collections as they were after", async () => {
    // A process of its own: the compactor changes a V8 flag of the whole process.
    const { stdout } = await promisify(execFile)(process.execPath, ["--max-semi-space-size=16", "--import", "tsx", "test/support/heap-churn.ts"], { cwd: root, timeout: 55_000 });
    const report = JSON.parse(stdout.trim().split("\n").at(-1)!) as ChurnReport;

    expect(report.stats.compactions).toBe(1);
    const done = report.logs.find((l) => l.msg === "heap: old space compacted");
    expect(done?.compacted).toBe(true);
    const [committedBefore, committedAfter] = done!.committed_mib!;
    const [freeBefore, freeAfter] = done!.free_mib!;
    expect(freeBefore).toBeGreaterThanOrEqual(0.25 * committedBefore); // it acted on a fragmented space
    expect(freeAfter).toBeLessThan(0.125 * committedAfter); // and compacted it
    expect(committedAfter).toBeLessThan(committedBefore); // giving pages back
    expect(report.stats.freedBytes).toBeGreaterThan(0);
    expect(report.stats.longestPauseMs).toBeGreaterThan(0);
    // Stopped, the flag is off: the same churn fragments the old space again.
    expect(report.armedAfterStop).toBe(false);
    expect(report.maxFreeShareAfterStop).toBeGreaterThanOrEqual(0.25);
  });

  it("is off at 0, and starts unarmed", () => {
    expect(startHeapCompactor(0)).toBeUndefined();
    const started = startHeapCompactor(60_000);
    expect(started?.armed).toBe(false);
    started?.stop();
  });
});
