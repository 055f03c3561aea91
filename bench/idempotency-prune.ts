/**
 * `npm run bench:prune [-- KEYS …]`: what forgetting idempotency keys costs the main thread. A SQLite file
 * with KEYS keys (default 200,000: aggregates of five keys, ten of them with 1,500; half of every
 * aggregate's keys two days old), then the housekeeping as it was until 2026-12-05 — one statement, a window
 * function over the whole table, on the main connection (better-sqlite3 runs it on the main thread, so its
 * wall time is the event loop's stall) — and as IdempotencyPrune does it now: the keys that aged past the
 * retention read in chunks, a turn of the event loop between chunks. Each on a fresh file; prints wall time,
 * the longest stall of the event loop (its delay at 1 ms resolution), keys deleted, and a second pass.
 * `BENCH_PRUNE_OLD=0` leaves the old statement out (it grows with the table: 30 s at 200,000). Writes nothing
 * to bench/results. In-process, no NATS.
 */
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { IdempotencyPrune, openDatabase, type Database } from "../src/persistence/index.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { table } from "./table.js";

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const RETENTION_MS = 24 * 3600_000;
const KEEP = 1000;

/** A fresh file with `n` keys; the returned cleanup closes and removes it. */
async function seeded(n: number): Promise<{ db: Database; cleanup: () => Promise<void> }> {
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}` });
  const now = Date.now();
  for (let i = 0; i < n; i += 500) {
    const values: unknown[] = [];
    const rows: string[] = [];
    for (let j = i; j < Math.min(n, i + 500); j++) {
      const aggregate = j < 15_000 ? `busy-${j % 10}` : `u-${j % Math.max(1, Math.floor(n / 5))}`;
      const created = j % 2 ? now - 2 * RETENTION_MS + j : now - j;
      values.push("User", aggregate, `k-${j}`, "f".repeat(64), '{"ok":true,"aggregate_version":3,"events":[]}', new Date(created).toISOString());
      rows.push("(?, ?, ?, ?, ?, ?)");
    }
    await db.execute(`insert into nerve_idempotency (aggregate_type, aggregate_id, key, fingerprint, reply, created_on) values ${rows.join(", ")}`, values, "run");
  }
  return { db, cleanup: () => db.close().finally(() => tmp.cleanup()) };
}

/** The statement IdempotencyPrune replaced. */
async function wholeTable(db: Database): Promise<number> {
  const before = new Date(Date.now() - RETENTION_MS).toISOString();
  const left = async () => Number((await db.execute<{ n: number }>("select count(*) as n from nerve_idempotency", [], "get")).n);
  const had = await left();
  await db.execute(
    `delete from nerve_idempotency where created_on < ? and (aggregate_type, aggregate_id, key) not in (
       select aggregate_type, aggregate_id, key from (
         select aggregate_type, aggregate_id, key, row_number() over (partition by aggregate_type, aggregate_id order by created_on desc) as rn
         from nerve_idempotency) ranked where rn <= ?)`,
    [before, KEEP],
    "run",
  );
  return had - (await left());
}

/** Runs `pass` with the event loop's delay watched: wall ms, longest stall ms, what it deleted. */
async function watched(pass: () => Promise<number>): Promise<[number, number, number]> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // A first tick so that a stall from the very start is measured against it.
  await new Promise((r) => setTimeout(r, 5));
  const t = performance.now();
  const deleted = await pass();
  const ms = performance.now() - t;
  await new Promise((r) => setTimeout(r, 5));
  h.disable();
  return [ms, h.max / 1e6, deleted];
}

async function main(): Promise<void> {
  const rows: (string | number)[][] = [];
  for (const n of sizes.length > 0 ? sizes : [200_000]) {
    const ways: [string, (db: Database) => () => Promise<number>][] = [["IdempotencyPrune (now)", (db) => {
      const prune = new IdempotencyPrune({ db, retentionMs: RETENTION_MS, keep: KEEP });
      return async () => (await prune.run()).deleted;
    }]];
    if (process.env.BENCH_PRUNE_OLD !== "0") ways.unshift(["one statement over the table (before)", (db) => () => wholeTable(db)]);
    for (const [name, make] of ways) {
      const { db, cleanup } = await seeded(n);
      try {
        const pass = make(db);
        for (const which of ["first pass", "second pass"]) {
          const [ms, stall, deleted] = await watched(pass);
          rows.push([n, name, which, ms.toFixed(0), stall.toFixed(1), deleted]);
          console.error(`${n} keys, ${name}, ${which}: ${ms.toFixed(0)} ms`);
        }
      } finally {
        await cleanup();
      }
    }
  }
  console.log(table("Forgetting idempotency keys: retention 24 h, the newest 1,000 of each aggregate kept; half the keys old, ten aggregates with 1,500", ["keys", "how", "pass", "wall ms", "longest event-loop stall ms", "keys deleted"], rows));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
