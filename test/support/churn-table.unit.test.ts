/**
 * ChurnTable (src/support/churn-table.ts): a Map's get/set/has/delete/size over a dictionary-mode
 * object. What it is for — no scavenge survivors kept by obsolete hash tables — is measured by
 * `npm run bench:churn-gc`, not here.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ChurnTable } from "../../src/support/churn-table.js";

describe("ChurnTable", () => {
  it("counts an entry once, however often it is set, and forgets it on delete", () => {
    const t = new ChurnTable<string>();
    t.set(7, "a");
    t.set(7, "b");
    t.set("x", "c");
    expect(t.size).toBe(2);
    expect(t.get(7)).toBe("b");
    expect(t.has("x")).toBe(true);
    expect(t.delete(7)).toBe(true);
    expect(t.delete(7)).toBe(false);
    expect(t.get(7)).toBeUndefined();
    expect(t.size).toBe(1);
  });

  it("takes any string as a key, those an object would inherit included", () => {
    const t = new ChurnTable<number>();
    const keys = ["__proto__", "constructor", "hasOwnProperty", "toString", "a", "b", ""];
    keys.forEach((k, i) => t.set(k, i));
    expect(t.size).toBe(keys.length);
    keys.forEach((k, i) => expect(t.get(k)).toBe(i));
    expect(new ChurnTable<number>().get("constructor")).toBeUndefined();
  });

  it("lists integer keys in ascending order, then the others, with their values", () => {
    const t = new ChurnTable<string>();
    for (const k of [30, 2, 2 ** 31, 11]) t.set(k, `v${k}`);
    t.set("name", "n");
    expect(t.keys()).toEqual(["2", "11", "30", String(2 ** 31), "name"]);
    expect(t.values()).toEqual(["v2", "v11", "v30", `v${2 ** 31}`, "n"]);
  });

  it("refuses undefined as a value (it could not be told from a missing entry)", () => {
    expect(() => new ChurnTable<unknown>().set(1, undefined)).toThrow(TypeError);
  });

  it("is empty after clear, and usable again", () => {
    const t = new ChurnTable<number>();
    for (let i = 0; i < 100; i++) t.set(i, i);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.keys()).toEqual([]);
    t.set(5, 5);
    expect(t.values()).toEqual([5]);
  });

  it("answers like a Map under any sequence of sets and deletes", () => {
    const key = fc.oneof(fc.nat({ max: 50 }), fc.constantFrom("a", "b", "__proto__", "9x"), fc.integer({ min: 2 ** 32, max: 2 ** 40 }));
    const op = fc.oneof(fc.record({ set: key, value: fc.integer() }), fc.record({ del: key }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const t = new ChurnTable<number>();
        const m = new Map<string, number>();
        for (const o of ops) {
          if ("set" in o) {
            t.set(o.set, o.value);
            m.set(String(o.set), o.value);
          } else expect(t.delete(o.del)).toBe(m.delete(String(o.del)));
          expect(t.size).toBe(m.size);
        }
        for (const [k, v] of m) expect(t.get(k)).toBe(v);
        expect([...t.keys()].sort()).toEqual([...m.keys()].sort());
      }),
    );
  });
});
