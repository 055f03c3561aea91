/** Merging a write-only projection's consecutive single-row inserts into multi-row ones. */
import { describe, expect, it } from "vitest";
import { mergeInserts, type BatchStatement } from "../../src/persistence/consumer-batch.js";

const UPSERT = "insert into stats (k, p) values (?, ?) on conflict (k) do update set p = excluded.p where stats.p < excluded.p";
const upsert = (k: string, p: number): BatchStatement => ({ sql: UPSERT, params: [k, p] });
const update: BatchStatement = { sql: "update stats set p = ? where k = ?", params: [1, "a"] };

describe("mergeInserts", () => {
  it("runs 86 consecutive identical inserts as statements of 64, 16, 4, 1 and 1 rows, the values in order", () => {
    const statements = Array.from({ length: 86 }, (_, i) => upsert(`k${i}`, i));
    const merged = mergeInserts(statements);
    expect(merged.map((s) => s.params.length / 2)).toEqual([64, 16, 4, 1, 1]);
    expect(merged[0]!.sql).toBe(
      `insert into stats (k, p) values ${Array(64).fill("(?, ?)").join(", ")} on conflict (k) do update set p = excluded.p where stats.p < excluded.p`,
    );
    expect(merged.flatMap((s) => s.params)).toEqual(statements.flatMap((s) => s.params));
    expect(merged[4]).toBe(statements[85]);
  });

  it("never merges across another statement, so every statement keeps its place", () => {
    const merged = mergeInserts([upsert("a", 1), upsert("b", 2), update, upsert("c", 3), upsert("d", 4), upsert("e", 5), upsert("f", 6)]);
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
      expect(mergeInserts(statements)).toEqual(statements);
    }
  });
});
