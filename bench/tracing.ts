/**
 * `npm run bench:tracing`: section 2b of the command-path bench on its own — the durable UpdateUserProfile
 * load with tracing off, on (OTLP/HTTP JSON to a sink that discards), and off again, at the full bench's
 * size (`BENCH_QUICK=1`: tiny). Prints the table and writes bench/results/latest-tracing.json.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { Cleanup } from "./cleanup.js";
import { registerUsers, userIds, waitConfirmed } from "./durable-commands.js";
import { startRig } from "./rig.js";
import { benchPlan } from "./plan.js";
import { benchTracing, tracingTable } from "./tracing-cost.js";

const plan = benchPlan();
const cleanup = new Cleanup();

async function main(): Promise<void> {
  const load0 = loadavg();
  console.log(`Nerve tracing bench${plan.quick ? " (BENCH_QUICK)" : ""}; load average ${load0.map((l) => l.toFixed(2)).join(" ")} on this machine before the run`);
  const { nats, client, load } = await startRig(cleanup, plan.client);
  const sqlite = await tempSqlitePath();
  cleanup.add("sqlite", () => sqlite.cleanup());
  const env = { NATS_URL: nats.url, NERVE_DB: `sqlite:${sqlite.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", NERVE_MAILBOX_SIZE: String(plan.mailboxSize) };
  const nerve = await startNerve(loadConfig(env), createLogger("silent"));
  cleanup.add("nerve", () => nerve.stop());
  const ids = userIds(plan.users);
  await registerUsers(load, ids, plan.inflight, Date.now() + 30_000);
  await waitConfirmed(nerve, client, ids.length, Date.now() + 30_000);
  const cost = await benchTracing(nerve, client, load, { ids, count: plan.tracingCommands, inflight: plan.inflight, phaseMs: 60_000, serverPid: nats.pid });
  console.log(tracingTable(cost));
  const dir = join(dirname(fileURLToPath(import.meta.url)), "results");
  await mkdir(dir, { recursive: true });
  const name = `latest-tracing${plan.quick ? "-quick" : ""}.json`;
  await writeFile(join(dir, name), `${JSON.stringify({ startedAt: new Date().toISOString(), quick: plan.quick, loadAverageBefore: load0, loadAverageAfter: loadavg(), tracing: cost }, null, 2)}\n`);
  console.log(`\nresults: bench/results/${name}`);
}

main()
  .then(() => cleanup.run().then(() => process.exit(0)))
  .catch(async (err) => {
    console.error(`bench failed: ${(err as Error)?.stack ?? String(err)}`);
    await cleanup.run();
    process.exit(1);
  });
