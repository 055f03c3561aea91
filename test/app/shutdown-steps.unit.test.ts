/** The bounds of an orderly stop's steps (src/app/shutdown-steps.ts), with real timers and small bounds. */
import { describe, expect, it } from "vitest";
import { ShutdownSteps } from "../../src/app/shutdown-steps.js";
import { captureLog } from "../support/index.js";

const never = () => new Promise<void>(() => undefined);

describe("ShutdownSteps", () => {
  it("given a drain that never ends, leaves it running at the bound less its reserve and goes on; the outcome names it", async () => {
    const log = captureLog("warn");
    const steps = new ShutdownSteps(log.logger, 800);
    const t0 = performance.now();
    await steps.drain("actors", never);
    const drained = performance.now() - t0;
    // The reserve is a quarter of the bound (at most 2 s): 600 ms of 800.
    expect(drained).toBeGreaterThanOrEqual(590);
    expect(drained).toBeLessThan(1000);
    expect(steps.drainLeft()).toBe(0);
    // The next drain step gets nothing more, but runs: its work is started and not awaited.
    let started = false;
    await steps.drain("writes", () => ((started = true), never()));
    expect(started).toBe(true);
    expect(steps.outcome()?.message).toMatch(/did not end within NERVE_SHUTDOWN_MS \(800 ms\) and were left running: actors, writes/);
    expect(log.lines.filter((l) => l.msg?.startsWith("shutdown: a step did not end in time")).map((l) => l.step)).toEqual(["actors", "writes"]);
  });

  it("gives the releasing steps that start late one second between them past the bound, and each at least 100 ms", async () => {
    const steps = new ShutdownSteps(captureLog().logger, 400);
    await steps.drain("actors", never);
    const t0 = performance.now();
    // Four releasing steps that never end: the first takes the shared second, the others their floor.
    for (const name of ["partitions", "consumers", "nats", "writer"]) await steps.release(name, never);
    const released = performance.now() - t0;
    expect(released).toBeGreaterThanOrEqual(1000 + 3 * 100 - 20);
    expect(released).toBeLessThan(1000 + 3 * 100 + 700);
    expect(steps.overran("writer")).toBe(true);
    expect(steps.overran("database")).toBe(false);
  });

  it("runs every step that ends in time to its end, reports one that throws and goes on, and is clean when all end well", async () => {
    const log = captureLog("warn");
    const steps = new ShutdownSteps(log.logger, 2000);
    const ran: string[] = [];
    await steps.drain("gateway", async () => void ran.push("gateway"));
    await steps.drain("outbox", () => {
      throw new Error("database closed");
    });
    await steps.release("nats", () => void ran.push("nats"));
    expect(ran).toEqual(["gateway", "nats"]);
    expect(steps.outcome()?.message).toBe("nerve stopped, but these shutdown steps failed: outbox (logged above)");
    const clean = new ShutdownSteps(log.logger, 2000);
    await clean.drain("gateway", async () => undefined);
    expect(clean.outcome()).toBeUndefined();
  });
});
