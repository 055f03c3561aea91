/** Merging a write-only projection's consecutive single-row inserts, and version-guarded updates, into multi-row statements. */
import { describe, expect, it } from "vitest";
import { mergeStatements, type BatchStatement } from "../../src/persistence/consumer-batch.js";

const UPSERT = "insert into stats (k, p) values (?, ?) on conflict (k) do update set p = excluded.p where stats.p < excluded.p";
const upsert = (k: string, p: number): BatchStatement => ({ sql: UPSERT, params: [k, p] });
const update: BatchStatement = { sql: "update stats set p = ? where k = ?", params: [1, "a"] };

describe("mergeStatements: inserts", () => {
  it("runs 86 consecutive identical inserts as statements of 64, 16, 4, 1 and 1 rows, the values in order", () => {
    const statements = Array.from({ length: 86 }, (_, i) => upsert(`k${i}`, i));
    const merged = mergeStatements(statements);
    expect(merged.map((s) => s.params.length / 2)).toEqual([64, 16, 4, 1, 1]);
    expect(merged[0]!.sql).toBe(
      `insert into stats (k, p) values ${Array(64).fill("(?, ?)").join(", ")} on conflict (k) do update set p = excluded.p where stats.p < excluded.p`,
    );
    expect(merged.flatMap((s) => s.params)).toEqual(statements.flatMap((s) => s.params));
    expect(merged[4]).toBe(statements[85]);
  });

  it("never merges across another statement, so every statement keeps its place", () => {
    const merged = mergeStatements([upsert("a", 1), upsert("b", 2), update, upsert("c", 3), upsert("d", 4), upsert("e", 5), upsert("f", 6)]);
    expect(merged.map((s) => [s.sql.startsWith("update") ? "update" : "insert", s.params.length / 2])).toEqual([
      ["insert", 1],
      ["insert", 1],
      ["update", 1],
      ["insert", 4],
    ]);
    expect(merged[2]).toBe(update);
  });

  it("leaves alone inserts that bind after their values, return rows, insert several rows already, or select", () => {
    const guarded = "insert into stats (k, p) values (?, ?) on conflict (k) do update set p = ? where stats.p < excluded.p";
    const returning = "insert into stats (k, p) values (?, ?) on conflict do nothing returning k";
    const twoRows = "insert into stats (k, p) values (?, ?), (?, ?)";
    const select = "insert into stats (k, p) select k, p from other where k = ?";
    for (const [sql, params] of [
      [guarded, ["a", 1, 2]],
      [returning, ["a", 1]],
      [twoRows, ["a", 1, "b", 2]],
      [select, ["a"]],
    ] as const) {
      const statements = [0, 1, 2, 3].map(() => ({ sql, params: [...params] }));
      expect(mergeStatements(statements)).toEqual(statements);
    }
  });
});

describe("mergeStatements: version-guarded updates", () => {
  const GUARDED = "update rows set a = ?, b = ?, version = ? where k = ? and version < ?";
  const guarded = (k: string, v: number): BatchStatement => ({ sql: GUARDED, params: [`a${v}`, v * 10, v, k, v] });

  it("merges a run with distinct keys into update … from (values …) statements of 64, 16, 4 and 1 rows, the values in order", () => {
    const statements = Array.from({ length: 70 }, (_, i) => guarded(`k${i}`, 2));
    const merged = mergeStatements(statements);
    expect(merged.map((s) => s.params.length / 5)).toEqual([64, 4, 1, 1]);
    expect(merged[1]!.sql).toBe(
      `update rows set a = v.column1, b = v.column2, version = v.column3 from (values ${Array(4).fill("(?, ?, ?, ?, ?)").join(", ")}) as v where rows.k = v.column4 and rows.version < v.column5`,
    );
    expect(merged.flatMap((s) => s.params)).toEqual(statements.flatMap((s) => s.params));
    expect(merged[3]).toBe(statements[69]);
  });

  it("never puts a key twice in one statement: a repeated key starts the next", () => {
    const statements = [guarded("a", 2), guarded("b", 2), guarded("c", 2), guarded("d", 2), guarded("a", 3), guarded("e", 2), guarded("f", 2), guarded("g", 2), guarded("h", 2)];
    const merged = mergeStatements(statements);
    expect(merged.map((s) => s.params.length / 5)).toEqual([4, 4, 1]);
    expect(merged[1]!.params[3]).toBe("a");
    expect(merged[1]!.params[2]).toBe(3);
  });

  it("leaves alone updates of another shape", () => {
    for (const sql of ["update rows set a = ? where k = ?", "update rows set a = ?, b = b + 1 where k = ? and version < ?", "update rows set a = ? where k = ? and version <= ?"]) {
      const width = sql.split("?").length - 1;
      const statements = [0, 1, 2, 3].map((i) => ({ sql, params: Array.from({ length: width }, (_, n) => `${i}-${n}`) }));
      expect(mergeStatements(statements)).toEqual(statements);
    }
  });
});
