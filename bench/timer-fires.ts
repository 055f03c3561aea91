/**
 * `npm run bench:timers [-- N [KEY=VALUE …]]`: how fast a mass expiry drains. One Nerve (SQLite by default,
 * every role) on a private nats-server; N access records (default 20,000) granted through the command bus,
 * all expiring at the same moment a little after the last grant; then the time from that moment until the
 * timer service has fired them all, and fires/s. KEY=VALUE arguments are added to the Nerve's environment
 * (NERVE_DB=postgres://… for PostgreSQL, NERVE_ROLES=commands to leave the consumers out). In-process;
 * writes nothing to bench/results.
 *
 * What a mass expiry does to everyone else's commands: a probe of live UpdateUserProfile commands over NATS
 * (an open loop at `BENCH_TIMERS_PROBE`/s, default 50, from a load client in a worker thread, latency from
 * each command's due time) runs for 5 s before the expiry, as the idle baseline, and then in windows of
 * 2 s from the due moment until the last timer has fired; each window's fires and the probe's p50 / p99 /
 * max are printed as it ends (the drain's progress). `BENCH_TIMERS_PROBE=0` leaves the probe out.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { deriveAccessId } from "../contracts/index.js";
import { startNerve, type Nerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { startNatsServer } from "../test/support/nats-server.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { failures, type CommandLoadResult } from "./command-load.js";
import { registerUsers, userIds } from "./durable-commands.js";
import { startLoadClient, type LoadClient } from "./load-client.js";
import { table, type Cell } from "./table.js";

const args = process.argv.slice(2);
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? 20_000);
const extra = Object.fromEntries(args.filter((a) => a.includes("=")).map((a) => a.split(/=(.*)/s, 2) as [string, string]));
const GRANTS_IN_FLIGHT = 256;
const PROBE_RATE = Number(process.env.BENCH_TIMERS_PROBE ?? 50);
const PROBE_USERS = 100;
const WINDOW_S = 2;

/** One probe window: `seconds` of live commands at PROBE_RATE, open loop. */
function probe(load: LoadClient, ids: string[], seconds: number, tag: string): Promise<CommandLoadResult> {
  const count = Math.max(1, Math.round(PROBE_RATE * seconds));
  return load.run({ kind: "profile", ids, count, inflight: 1024, rate: PROBE_RATE, tag, deadline: Date.now() + seconds * 1000 + 30_000, timeoutMs: 30_000 });
}

/** What else a window saw: the main thread's longest event-loop delay (ms) and the WAL checkpoints' longest (ms, since start), for telling a stall of the process from a wait. */
interface WindowSide {
  loopMaxMs: number;
  checkpointMs: number;
}

function probeRow(label: string, fires: number | string, r: CommandLoadResult, side: WindowSide): Cell[] {
  return [label, fires, r.ok, failures(r), r.latency.p50, r.latency.p99, r.latency.max, side.loopMaxMs, side.checkpointMs];
}

/** Runs `fn` with the event loop's delay watched; returns its result and the window's {@link WindowSide}. */
async function watched<T>(nerve: Nerve, fn: () => Promise<T>): Promise<[T, WindowSide]> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  try {
    const out = await fn();
    return [out, { loopMaxMs: Math.round(h.max / 1e5) / 10, checkpointMs: Math.round(nerve.db.checkpoints?.longestMs ?? 0) }];
  } finally {
    h.disable();
  }
}

async function grantAll(nerve: Nerve, expiresAt: string): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < N) {
      const i = next++;
      const user = `u-${i}`;
      const course = `c-bench`;
      await nerve.bus.execute({ context: "access", type: "GrantCourseAccess", aggregateId: deriveAccessId(user, course), body: { user_id: user, course_id: course, expires_at: expiresAt } });
    }
  };
  await Promise.all(Array.from({ length: GRANTS_IN_FLIGHT }, worker));
}

async function main(): Promise<void> {
  const nats = await startNatsServer();
  const sqlite = await tempSqlitePath();
  let nerve: Nerve | undefined;
  let load: LoadClient | undefined;
  try {
    const env: Record<string, string> = { NATS_URL: nats.url, NERVE_DB: `sqlite:${sqlite.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", ...extra };
    nerve = await startNerve(loadConfig(env), createLogger("silent"));
    load = PROBE_RATE > 0 ? await startLoadClient(nats.url, "worker") : undefined;
    const ids = userIds(PROBE_USERS);
    if (load) await registerUsers(load, ids, 64, Date.now() + 60_000);
    // Time enough for the grants (about 1,000/s on a busy machine), so that none is due before all are written.
    const expiresAt = new Date(Date.now() + 10_000 + N).toISOString();
    const t0 = performance.now();
    await grantAll(nerve, expiresAt);
    const granted = performance.now() - t0;
    const wait = Date.parse(expiresAt) - Date.now();
    if (wait < 0) throw new Error(`granting took ${Math.round(granted)} ms, past the expiry: raise the margin`);
    const firedBefore = nerve.timers.fired;
    const writerBefore = { ...nerve.writer.stats };
    const rows: Cell[][] = [];
    const title = `Live UpdateUserProfile at ${PROBE_RATE}/s (open loop, ms from each one's due time) before and during the expiry of ${N} access records`;
    const header = ["window", "fires", "probe ok", "failed", "p50 ms", "p99 ms", "max ms", "loop max ms", "checkpoint max ms"];
    // The idle baseline ends a second before the due moment, so that it measures none of the drain.
    if (load && wait > 6_000) {
      await new Promise((r) => setTimeout(r, wait - 6_000));
      const l = load;
      rows.push(probeRow("5 s before the expiry (idle)", 0, ...(await watched(nerve, () => probe(l, ids, 5, "idle")))));
      console.log(table(title, header, rows));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(expiresAt) - Date.now())));
    const start = performance.now();
    const fired = () => nerve!.timers.fired - firedBefore;
    // When the last timer fired, looked at every 50 ms (with progress every 5 s when there is no probe to show it).
    const drained = (async () => {
      let last = start;
      while (fired() < N) {
        if (performance.now() - start > 30 * 60_000) throw new Error(`only ${fired()} of ${N} fired in 30 minutes`);
        await new Promise((r) => setTimeout(r, 50));
        if (!load && performance.now() - last > 5_000) {
          last = performance.now();
          process.stderr.write(`  ${fired()} fired after ${((last - start) / 1000).toFixed(0)} s\n`);
        }
      }
      return performance.now();
    })();
    let doneAt: number | undefined;
    drained.then((t) => (doneAt = t), () => undefined);
    if (load) {
      // Windows back to back until every timer has fired; each printed as it ends.
      for (let w = 0; doneAt === undefined && performance.now() - start < 30 * 60_000; w++) {
        const before = fired();
        const l = load;
        const [r, side] = await watched(nerve, () => probe(l, ids, WINDOW_S, `drain-${w}`));
        const row = probeRow(`${w * WINDOW_S}–${(w + 1) * WINDOW_S} s after the due moment`, fired() - before, r, side);
        rows.push(row);
        process.stderr.write(`  ${row.join("  ")}\n`);
      }
      console.log(table(title, header, rows));
    }
    const s = ((await drained) - start) / 1000;
    console.log(`${N} grants in ${(granted / 1000).toFixed(1)} s; ${N} expiries fired in ${s.toFixed(1)} s: ${Math.round(N / s)} fires/s (${env.NERVE_DB!.split(":")[0]}, roles ${env.NERVE_ROLES ?? "all"})`);
    // Group commits held back while a projection was more than NERVE_CONSUMER_LAG_LIMIT behind (src/consumers/backlog.ts), since the idle baseline.
    const w = nerve.writer.stats;
    console.log(`group commits held for the projections' backlog: ${w.admissionWaits - writerBefore.admissionWaits}, ${((w.admissionWaitMs - writerBefore.admissionWaitMs) / 1000).toFixed(2)} s in all`);
  } finally {
    await load?.close().catch((err: unknown) => console.error("load client:", err));
    await nerve?.stop().catch((err: unknown) => console.error("stop:", err));
    await nats.stop();
    await sqlite.cleanup();
  }
}

await main();
