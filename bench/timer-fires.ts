/**
 * `npm run bench:timers [-- N [KEY=VALUE …]]`: how fast a mass expiry drains. One Nerve (SQLite by default,
 * every role) on a private nats-server; N access records (default 20,000) granted through the command bus,
 * all expiring at the same moment a little after the last grant; then the time from that moment until the
 * timer service has fired them all, and fires/s. KEY=VALUE arguments are added to the Nerve's environment
 * (NERVE_DB=postgres://… for PostgreSQL, NERVE_ROLES=commands to leave the consumers out). In-process;
 * writes nothing to bench/results.
 */
import { deriveAccessId } from "../contracts/index.js";
import { startNerve, type Nerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { startNatsServer } from "../test/support/nats-server.js";
import { tempSqlitePath } from "../test/support/tmp.js";

const args = process.argv.slice(2);
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? 20_000);
const extra = Object.fromEntries(args.filter((a) => a.includes("=")).map((a) => a.split(/=(.*)/s, 2) as [string, string]));
const GRANTS_IN_FLIGHT = 256;

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
  try {
    const env: Record<string, string> = { NATS_URL: nats.url, NERVE_DB: `sqlite:${sqlite.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", ...extra };
    nerve = await startNerve(loadConfig(env), createLogger("silent"));
    // Time enough for the grants (about 1,000/s on a busy machine), so that none is due before all are written.
    const expiresAt = new Date(Date.now() + 10_000 + N).toISOString();
    const t0 = performance.now();
    await grantAll(nerve, expiresAt);
    const granted = performance.now() - t0;
    const wait = Date.parse(expiresAt) - Date.now();
    if (wait < 0) throw new Error(`granting took ${Math.round(granted)} ms, past the expiry: raise the margin`);
    const firedBefore = nerve.timers.fired;
    await new Promise((r) => setTimeout(r, wait));
    const start = performance.now();
    let last = 0;
    while (nerve.timers.fired - firedBefore < N) {
      if (performance.now() - start > 30 * 60_000) throw new Error(`only ${nerve.timers.fired - firedBefore} of ${N} fired in 30 minutes`);
      await new Promise((r) => setTimeout(r, 50));
      if (performance.now() - last > 5_000) {
        last = performance.now();
        process.stderr.write(`  ${nerve.timers.fired - firedBefore} fired after ${((last - start) / 1000).toFixed(0)} s\n`);
      }
    }
    const s = (performance.now() - start) / 1000;
    console.log(`${N} grants in ${(granted / 1000).toFixed(1)} s; ${N} expiries fired in ${s.toFixed(1)} s: ${Math.round(N / s)} fires/s (${env.NERVE_DB!.split(":")[0]}, roles ${env.NERVE_ROLES ?? "all"})`);
  } finally {
    await nerve?.stop().catch((err: unknown) => console.error("stop:", err));
    await nats.stop();
    await sqlite.cleanup();
  }
}

await main();
