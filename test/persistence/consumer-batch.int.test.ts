/**
 * Merged statements against a real SQLite file (the driver the write worker uses): a batch's
 * statements merged give the same rows as the same statements run one by one, in order.
 */
import { describe, expect, it } from "vitest";
import type { Database } from "../../src/persistence/index.js";
import { mergeStatements, type BatchStatement } from "../../src/persistence/consumer-batch.js";
import { useSqliteDatabase } from "../support/index.js";

let db: Database;
useSqliteDatabase((d) => (db = d));

// A small deterministic generator: the same statements every run.
function lcg(seed: number): () => number {
  let x = seed;
  return () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

async function rowsAfter(table: string, statements: BatchStatement[]): Promise<unknown[]> {
  await db.execute(`create table ${table} (k text primary key, a text not null, b integer not null, version integer not null)`, [], "run");
  for (let i = 0; i < 60; i++) await db.execute(`insert into ${table} (k, a, b, version) values (?, ?, ?, ?)`, [`k${i}`, "seed", 0, 3], "run");
  for (const st of statements) await db.execute(st.sql, st.params, "run");
  return db.execute(`select * from ${table} order by k`, [], "all");
}

describe("mergeStatements on SQLite", () => {
  it("version-guarded updates merged into update … from (values …) leave the rows the single updates leave", async () => {
    const next = lcg(7);
    const version = new Map<string, number>();
    const params: unknown[][] = [];
    for (let i = 0; i < 300; i++) {
      // Keys repeat (versions rising per key, some at or below the stored 3, so the guard refuses them), and a few have no row.
      const k = `k${Math.floor(next() * 70)}`;
      const v = (version.get(k) ?? Math.floor(next() * 4)) + 1;
      version.set(k, v);
      params.push([`a-${i}`, i, v, k, v]);
    }
    const statements = (table: string): BatchStatement[] => params.map((p) => ({ sql: `update ${table} set a = ?, b = ?, version = ? where k = ? and version < ?`, params: p }));
    const merged = mergeStatements(statements("merged"));
    expect(merged.length).toBeLessThan(params.length / 2);
    expect(merged.some((s) => s.sql.includes("from (values"))).toBe(true);
    const one = await rowsAfter("single", statements("single"));
    const all = await rowsAfter("merged", merged);
    expect(all).toEqual(one);
    // The guard refused some and applied others: the comparison covers both.
    expect((one as { a: string }[]).filter((r) => r.a === "seed").length).toBeGreaterThan(0);
    expect((one as { a: string }[]).filter((r) => r.a !== "seed").length).toBeGreaterThan(30);
  });
});
