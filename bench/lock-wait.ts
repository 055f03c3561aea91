/**
 * `npm run bench:lock-wait`: what a write on the main connection costs the event loop while the write worker
 * commits back to back. Two lanes of 150-write group commits keep the worker's lock busy; meanwhile a
 * main-connection transaction (one insert) runs every 5 ms, 200 of them — plainly (SQLite's busy handler
 * waits for the lock on the main thread: 1, 2, 5, 10 … ms) or through `SqliteWriteWorker.exclusive` (it runs
 * once nothing is in flight at the worker, holding what is sent meanwhile). Prints each one's wall time and
 * the event loop's delay (1 ms resolution), `BENCH_ROUNDS` alternating pairs (default 2); writes nothing
 * to bench/results. A few seconds in-process, no NATS.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { openDatabase, type AggregateWrite } from "../src/persistence/index.js";
import { SqliteWriteWorker } from "../src/persistence/sqlite-write-worker.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { percentile } from "./percentiles.js";
import { table } from "./table.js";

const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2));
const TRANSACTIONS = 200;
const BATCH = 150;

async function measure(how: "plain" | "exclusive"): Promise<(string | number)[]> {
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}`, sqliteSynchronous: "FULL" });
  const worker = new SqliteWriteWorker(db, () => undefined);
  try {
    await db.execute("create table lock_wait_rows (id integer primary key autoincrement, v text)", [], "run");
    const versions = new Map<string, number>();
    let n = 0;
    const batch = (): AggregateWrite[] =>
      Array.from({ length: BATCH }, () => {
        const id = `lw-${n++ % 600}`;
        const base = versions.get(id) ?? 0;
        versions.set(id, base + 1);
        return { aggregateType: "User", aggregateId: id, baseVersion: base, version: base + 1, state: { bio: "x".repeat(200) }, now: new Date().toISOString(), events: [] };
      });
    let stop = false;
    let commits = 0;
    const lane = async () => {
      while (!stop) {
        await worker.commit(batch());
        commits++;
      }
    };
    const lanes = [lane(), lane()];
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const walls: number[] = [];
    for (let i = 0; i < TRANSACTIONS; i++) {
      await new Promise((r) => setTimeout(r, 5));
      const started = performance.now();
      const write = () => db.connection.transactional(async (trx) => void (await db.execute("insert into lock_wait_rows (v) values (?)", ["x"], "run", trx)));
      await (how === "exclusive" ? worker.exclusive(write) : write());
      walls.push(performance.now() - started);
    }
    delay.disable();
    stop = true;
    await Promise.all(lanes);
    walls.sort((a, b) => a - b);
    const ms = (v: number) => v.toFixed(2);
    return [how, TRANSACTIONS, commits, ms(percentile(walls, 50)), ms(percentile(walls, 99)), ms(walls.at(-1)!), ms(delay.percentile(50) / 1e6), ms(delay.percentile(99) / 1e6), ms(delay.max / 1e6)];
  } finally {
    await worker.close();
    await db.close();
    await tmp.cleanup();
  }
}

const rows: (string | number)[][] = [];
for (let r = 0; r < rounds; r++) for (const how of ["plain", "exclusive"] as const) rows.push(await measure(how));
console.log(
  table(
    `A main-connection transaction every 5 ms while the write worker commits ${BATCH}-write group commits back to back (two in flight)`,
    ["how", "transactions", "group commits meanwhile", "wall p50 ms", "p99", "max", "event loop delay p50 ms", "p99", "max"],
    rows,
  ),
);
process.exit(0);
