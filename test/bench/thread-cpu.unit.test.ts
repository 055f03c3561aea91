import { writeSync, openSync, closeSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { countersMeter, processCounters } from "../../bench/thread-cpu.js";

// The benches' wake-up counters read Linux's /proc; elsewhere they give nothing, which the benches print as blanks.
const linux = process.platform === "linux";

describe.runIf(linux)("processCounters", () => {
  it("reads this process's CPU, sleeps, preemptions and write system calls", () => {
    const c = processCounters(process.pid)!;
    expect(c.cpuMs).toBeGreaterThan(0);
    expect(c.sleeps).toBeGreaterThanOrEqual(0);
    expect(c.preempted).toBeGreaterThanOrEqual(0);
    expect(c.writes).toBeGreaterThanOrEqual(0);
  });

  it("is undefined for a process that does not exist", () => {
    expect(processCounters(2 ** 22 + 1)).toBeUndefined();
  });

  it("counts each write system call since the meter started, per operation", () => {
    const file = join(tmpdir(), `nerve-thread-cpu-${process.pid}.tmp`);
    const fd = openSync(file, "w");
    try {
      const meter = countersMeter([process.pid]);
      for (let i = 0; i < 100; i++) writeSync(fd, "x");
      const [mine] = meter(10);
      // 100 writes over 10 operations: at least 10 per operation (the test runner may write too).
      expect(mine!.writes).toBeGreaterThanOrEqual(10);
      expect(mine!.writes).toBeLessThan(100);
    } finally {
      closeSync(fd);
      unlinkSync(file);
    }
  });

  it("keeps the sleeps of this process's threads that have ended (a worker closed before the reading)", async () => {
    const meter = countersMeter([process.pid]);
    // Fifty waits of 1 ms each: fifty voluntary context switches of a thread that is gone when the meter reads.
    const worker = new Worker("const cell = new Int32Array(new SharedArrayBuffer(4)); for (let i = 0; i < 50; i++) Atomics.wait(cell, 0, 0, 1);", { eval: true });
    await new Promise((resolve) => worker.once("exit", resolve));
    const [mine] = meter(1);
    expect(mine!.sleeps).toBeGreaterThanOrEqual(50);
  });

  it("gives undefined for a pid it cannot read, beside those it can", () => {
    const [mine, gone] = countersMeter([process.pid, 2 ** 22 + 1])(1);
    expect(mine).toBeDefined();
    expect(gone).toBeUndefined();
  });
});
