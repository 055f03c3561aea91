/**
 * What one durable transaction costs on this disk, whatever runs it: better-sqlite3 (MikroORM's driver,
 * which the write worker uses, its statements prepared once), a WAL-mode file beside the bench's databases, `begin immediate`, the
 * three single-row inserts of a one-event command (snapshot, event, outbox row) and `commit`, one at a
 * time, with synchronous FULL (Nerve's default: survives power loss) and NORMAL (survives a crash of
 * the process). A lone command can be no faster than the floor's reply plus this.
 */
import { openSqlite } from "../src/persistence/sqlite-lock.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { percentile } from "./percentiles.js";

/** One synchronous setting's transactions: p50, p99 and mean (ms), and the commit's own p50. */
export interface DiskFloor {
  synchronous: "FULL" | "NORMAL";
  transactions: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  commitP50Ms: number;
}

/** Runs `count` transactions with each synchronous setting on a fresh file; returns FULL's figures, then NORMAL's. */
export async function measureDiskFloor(count = 1000): Promise<DiskFloor[]> {
  const tmp = await tempSqlitePath();
  const db = openSqlite(tmp.path, 5000);
  try {
    db.exec("pragma journal_mode = WAL");
    db.exec("create table t (id integer primary key, v blob)");
    const [begin, insert, commit] = [db.prepare("begin immediate"), db.prepare("insert into t (v) values (?)"), db.prepare("commit")];
    const body = Buffer.alloc(300, 7);
    const out: DiskFloor[] = [];
    for (const synchronous of ["FULL", "NORMAL"] as const) {
      db.exec(`pragma synchronous = ${synchronous}`);
      const total: number[] = [];
      const commits: number[] = [];
      for (let i = 0; i < count; i++) {
        const started = performance.now();
        begin.run();
        for (let k = 0; k < 3; k++) insert.run(body);
        const committing = performance.now();
        commit.run();
        const done = performance.now();
        total.push(done - started);
        commits.push(done - committing);
      }
      total.sort((a, b) => a - b);
      commits.sort((a, b) => a - b);
      const r = (x: number) => Math.round(x * 1000) / 1000;
      out.push({ synchronous, transactions: count, p50Ms: r(percentile(total, 50)), p99Ms: r(percentile(total, 99)), meanMs: r(total.reduce((s, x) => s + x, 0) / count), commitP50Ms: r(percentile(commits, 50)) });
    }
    return out;
  } finally {
    db.close();
    await tmp.cleanup();
  }
}
