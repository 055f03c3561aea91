/**
 * A Nerve service process for bench/cluster.ts: what `npm start` runs (src/main.ts: configuration,
 * logger, process guards, startNerve, orderly shutdown on SIGTERM; no local nats-server fallback),
 * with two bench-only additions.
 *
 * - Standby: with BENCH_NODE_STANDBY=1 it loads every module (tsx compiles them), logs "bench node
 *   loaded", and waits for one line of JSON on stdin — environment variables (NERVE_INSTANCE_ID,
 *   NERVE_DB, …) — before it starts. A hand-off run can then add an instance in the time Nerve itself
 *   takes to start, not the seconds Node and tsx take to load it on this shared machine.
 * - `BENCH_NERVE_OWNERSHIP=sole`, passed to startNerve as `overrides.ownership`: one instance on
 *   PostgreSQL with no leases and no fence checks, for the fencing-cost comparison. A startNerve
 *   without that third parameter ignores it and starts fenced as usual; the log line "bench node
 *   ready" says which (`bench_fenced`), and bench/cluster.ts reads `true` as "hook missing".
 */
import { createInterface } from "node:readline";
import { startNerve, stopOnSignals, type NerveOverrides } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { installProcessGuards } from "../src/supervision/index.js";

/** The environment sent on stdin by the bench, once. */
async function standbyEnv(): Promise<Record<string, string>> {
  console.log(JSON.stringify({ msg: "bench node loaded", pid: process.pid }));
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    rl.close();
    return JSON.parse(line) as Record<string, string>;
  }
  // stdin closed without a line: the bench is gone.
  process.exit(0);
}

async function main(): Promise<void> {
  if (process.env.BENCH_NODE_STANDBY === "1") Object.assign(process.env, await standbyEnv());
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL);
  installProcessGuards(logger);
  const overrides: NerveOverrides = process.env.BENCH_NERVE_OWNERSHIP === "sole" ? { ownership: "sole" } : {};
  const nerve = await startNerve(config, logger, overrides);
  logger.info({ bench_fenced: nerve.ownership.fenced, bench_overrides: overrides, db: nerve.db.dialect }, "bench node ready");
  stopOnSignals(nerve, logger, config.NERVE_SHUTDOWN_MS);
}

main().catch((err) => {
  console.error("bench node failed to start:", err instanceof Error ? err.message : err);
  process.exit(1);
});
