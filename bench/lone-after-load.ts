/**
 * `npm run bench:lone-after-load`: a question about bench:pairs' method. There each floor's one-at-a-time phase
 * is a benchFloor call of its own — a fresh store, database, connection and stream — while Nerve's follows its
 * own saturation load on the same instance. This runs the durable floor + contract (`BENCH_LONE_AFTER_LOAD_KIND=main`: the
 * main-thread durable floor) both ways, alternated over `BENCH_LONE_AFTER_LOAD_ROUNDS` (5) rounds: fresh, and right after 20,000
 * commands at 256 in flight on the same store (1.5 s after, about when bench:pairs' Nerve has its events out
 * and read), and prints each round's p50 / p99 and the p99s' medians. It writes nothing.
 */
import { Cleanup, runToEnd } from "./cleanup.js";
import type { CommandLoadResult, LoadSpec } from "./command-load.js";
import { userIds } from "./durable-commands.js";
import { benchFloor } from "./floor.js";
import type { LoadClient } from "./load-client.js";
import { median } from "./percentiles.js";
import { startRig } from "./rig.js";

const cleanup = new Cleanup();
const ROUNDS = Number(process.env.BENCH_LONE_AFTER_LOAD_ROUNDS ?? 5);

async function main(): Promise<void> {
  const after = (ms: number) => Date.now() + ms;
  const { nats, load } = await startRig(cleanup, "main");
  const ids = userIds(1000);
  const readers = { count: 1, ack: "all" as const };
  const kind = (process.env.BENCH_LONE_AFTER_LOAD_KIND ?? "contract") as "contract" | "main";
  // Warm the code once.
  await benchFloor(nats.url, load, { ids, count: 4000, inflight: 256, deadline: after(60_000), readers, durable: kind });
  const out: Record<string, number[]> = { fresh: [], afterLoad: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of r % 2 === 0 ? ["fresh", "afterLoad"] : ["afterLoad", "fresh"]) {
      if (mode === "fresh") {
        await benchFloor(nats.url, load, { ids, count: 20_000, inflight: 256, deadline: after(60_000), readers, durable: kind });
        const l = await benchFloor(nats.url, load, { ids, count: 2000, inflight: 1, deadline: after(60_000), readers, durable: kind });
        out.fresh!.push(l.load.latency.p99);
        console.log(`round ${r + 1} fresh: p50 ${l.load.latency.p50.toFixed(2)} p99 ${l.load.latency.p99.toFixed(2)}`);
      } else {
        let lone: CommandLoadResult | undefined;
        const both: LoadClient = {
          placement: "main",
          run: async (spec: LoadSpec) => {
            await load.run({ ...spec, count: 20_000, inflight: 256 });
            // As Nerve's in bench:pairs, once its events are out and read (about what that takes).
            await new Promise((r) => setTimeout(r, 1500));
            lone = await load.run(spec);
            return lone;
          },
          close: async () => undefined,
        };
        await benchFloor(nats.url, both, { ids, count: 2000, inflight: 1, deadline: after(120_000), readers, durable: kind });
        out.afterLoad!.push(lone!.latency.p99);
        console.log(`round ${r + 1} after its own load: p50 ${lone!.latency.p50.toFixed(2)} p99 ${lone!.latency.p99.toFixed(2)}`);
      }
    }
  }
  console.log(`median p99: fresh ${median(out.fresh!).toFixed(2)}, after its own load ${median(out.afterLoad!).toFixed(2)}`);
}

runToEnd(main, { budgetMs: 600_000, cleanup, writeResults: async () => undefined });
