/**
 * `npm run bench:inbox-prune [-- ROWS …]`: what forgetting the projections' inbox rows (InboxPrune) costs.
 * A SQLite file with ROWS rows of consumer_inbox (default 1,000,000) over the ten consumers — eight
 * projections, two process managers — their events spread evenly over the last 14 days, so that with the
 * default horizon of 7 days about two fifths of the table goes; then the first pass (the backlog of a table
 * that was never pruned), the next one (nothing aged in), and one ten minutes later (a steady state's
 * work). Twice, each on a fresh file: as the service prunes (each slice bounded by a read, its key range
 * deleted by the write worker) and with the deletes on the main connection, as without a worker and as in
 * the first design (better-sqlite3 runs them, and their commits' fsyncs, on the main thread; the worker's
 * exclusive turn the first design took adds nothing without contention). Nothing else runs. Prints for each pass its wall time (2 ms pauses between slices included),
 * the main thread's busy time (event-loop utilization), the longest stall of the event loop (its delay at
 * 1 ms resolution) and the rows deleted. `BENCH_INBOX_PG=1` runs the same on PostgreSQL (127.0.0.1, a
 * database of its own) too. Writes nothing to bench/results. In-process, no NATS.
 */
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { v7 } from "uuid";
import { InboxPrune, consumerEntities, type Subscriber } from "../src/consumers/index.js";
import { openDatabase, type Database } from "../src/persistence/index.js";
import { SqliteWriteWorker } from "../src/persistence/sqlite-write-worker.js";
import { createSubscribers, readModelEntities } from "../src/projections/index.js";
import { tempPostgres } from "../test/support/postgres.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { table, type Cell } from "./table.js";

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const DAY = 86_400_000;
const HORIZON = 7 * DAY;
const SPREAD = 14 * DAY;
const INSERT_ROWS = 500;

/** Fills the inbox with `n` rows, round-robin over `consumers`, their ids' times evenly over the SPREAD before `now`. */
async function fill(db: Database, n: number, consumers: string[], now: number): Promise<void> {
  const handledOn = new Date(now).toISOString();
  for (let i = 0; i < n; ) {
    await db.connection.transactional(async (trx) => {
      for (let batch = 0; batch < 40 && i < n; batch++) {
        const params: unknown[] = [];
        const end = Math.min(n, i + INSERT_ROWS);
        for (; i < end; i++) params.push(consumers[i % consumers.length], v7({ msecs: now - Math.floor((i / n) * SPREAD) }), handledOn);
        await db.execute(`insert into consumer_inbox (consumer, event_id, handled_on) values ${new Array<string>(params.length / 3).fill("(?, ?, ?)").join(", ")}`, params, "run", trx);
      }
    });
  }
}

/** Runs `pass` with the event loop's delay watched: wall ms, longest stall ms. */
async function watched<T>(pass: () => Promise<T>): Promise<[T, number, number]> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // A first tick so that a stall from the very start is measured against it.
  await new Promise((r) => setTimeout(r, 5));
  const t = performance.now();
  const out = await pass();
  const ms = performance.now() - t;
  await new Promise((r) => setTimeout(r, 5));
  h.disable();
  return [out, ms, h.max / 1e6];
}

async function bench(how: string, db: Database, n: number, worker: SqliteWriteWorker | undefined, rows: Cell[][]): Promise<void> {
  const subscribers: Subscriber[] = createSubscribers({ bus: {} as never, db });
  const now = Date.now();
  const t = performance.now();
  await fill(db, n, subscribers.map((s) => s.name), now);
  console.error(`${how}: ${n} inbox rows in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const prune = new InboxPrune({ db, writer: worker, subscribers, horizonMs: HORIZON });
  for (const [which, at] of [["first pass", now], ["next pass", now], ["ten minutes later", now + 10 * 60_000]] as const) {
    const elu = performance.eventLoopUtilization();
    const [r, ms, stall] = await watched(() => prune.run(at));
    const busy = performance.eventLoopUtilization(elu).active;
    const deleted = Object.values(r.deleted).reduce((a, b) => a + b, 0);
    rows.push([how, n, which, Math.round(ms), Math.round(busy), Number(stall.toFixed(1)), r.slices, deleted]);
    console.error(`${how}, ${n} rows, ${which}: ${ms.toFixed(0)} ms, ${deleted} deleted`);
  }
}

async function main(): Promise<void> {
  const rows: Cell[][] = [];
  for (const n of sizes.length > 0 ? sizes : [1_000_000]) {
    for (const how of ["SQLite, write worker (now)", "SQLite, main connection"]) {
      const tmp = await tempSqlitePath();
      const db = await openDatabase({ url: `sqlite:${tmp.path}`, entities: [...consumerEntities, ...readModelEntities] });
      const worker = new SqliteWriteWorker(db, (err) => console.error(err));
      try {
        await bench(how, db, n, how.includes("worker") ? worker : undefined, rows);
      } finally {
        await worker.close();
        await db.close();
        await tmp.cleanup();
      }
    }
    if (process.env.BENCH_INBOX_PG === "1") {
      const pg = await tempPostgres();
      const pdb = await openDatabase({ url: pg.url, entities: [...consumerEntities, ...readModelEntities] });
      try {
        await bench("PostgreSQL", pdb, n, undefined, rows);
      } finally {
        await pdb.close();
        await pg.drop();
      }
    }
  }
  console.log(
    table(
      "Forgetting projections' inbox rows: horizon 7 days, events spread over 14 days, 10 consumers (8 projections pruned), slices of 500, 2 ms pauses",
      ["how", "rows", "pass", "wall ms", "main thread busy ms", "longest event-loop stall ms", "slices", "rows deleted"],
      rows,
    ),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
