/**
 * bench:pairs' `process` method (bench/pairs-lone-child.ts): a subject's one-at-a-time phase measured with its
 * service in a child process and its client here. Against a real nats-server: the child's loads are served by
 * this process's client (warm-up, then the counted commands), its answer is the counted load's, and a child
 * that cannot do its task answers with why and is gone.
 */
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loneInChild } from "../../bench/pairs-lone-child.js";
import { startLoadClient, type LoadClient } from "../../bench/load-client.js";
import type { LoadSpec } from "../../bench/command-load.js";
import { userIds } from "../../bench/durable-commands.js";
import { useNatsWithStreams, type NatsServerHandle } from "../support/index.js";

/** This process's children that run bench/pairs-lone-child.ts (from /proc: their parent and command line). */
function loneChildren(): number[] {
  const found: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("pairs-lone-child")) found.push(Number(pid));
    } catch {
      // gone while read
    }
  }
  return found;
}

describe("bench:pairs, one at a time in a process of its own", () => {
  let nats: NatsServerHandle;
  let load: LoadClient;
  // The floor makes its own stream.
  useNatsWithStreams((h) => ({ nats } = h), async () => undefined);
  beforeAll(async () => {
    load = await startLoadClient(nats.url, "main");
  });
  afterAll(async () => {
    await load?.close();
  });

  it("runs the durable floor + contract in the child, its client here: the warm-up, then the counted commands", async () => {
    const specs: LoadSpec[] = [];
    const here: LoadClient = { placement: "main", run: (spec) => (specs.push(spec), load.run(spec)), close: async () => undefined };
    const { l, gc } = await loneInChild({ subject: "floor", durable: "contract", natsUrl: nats.url, ids: userIds(10), inherited: {}, lone: 30, warmUp: 10 }, here, 60_000);
    expect(specs.map((s) => [s.count, s.inflight, s.tag])).toEqual([
      [10, 1, "pairs-lone-warm-up"],
      [30, 1, "floor"],
    ]);
    expect(l.ok).toBe(30);
    expect(l.sent).toBe(30);
    expect(l.latency.p99).toBeGreaterThan(0);
    expect(typeof gc).toBe("object");
    expect(loneChildren()).toEqual([]);
  });

  it("answers with the child's error when it cannot do its task, and leaves no child behind", async () => {
    // Nothing listens on port 1: the child's floor cannot connect.
    const failed = loneInChild({ subject: "floor", durable: undefined, natsUrl: "nats://127.0.0.1:1", ids: userIds(10), inherited: {}, lone: 10, warmUp: 0 }, load, 60_000);
    await expect(failed).rejects.toThrow(/one-at-a-time child \(floor\) failed: .*connection refused/is);
    expect(loneChildren()).toEqual([]);
  });
});
