import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { NerveError } from "../../contracts/index.js";
import { PARTITIONS, fnv1a32, parsePartitionSubject, partitionOf, partitionSubject } from "../../src/cluster/index.js";

// The byte-wise definition, over TextEncoder's bytes: what the inline encoder must equal.
function reference(text: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
// Random bytes drawn in bulk: one randomBytes call per id would dominate the distribution test.
let pool = randomBytes(0);
let poolAt = 0;
function randomId(length: number): string {
  if (poolAt + length > pool.length) {
    pool = randomBytes(1 << 20);
    poolAt = 0;
  }
  let id = "";
  for (let i = 0; i < length; i++) id += ID_ALPHABET[pool[poolAt++]! & 63];
  return id;
}

describe("fnv1a32", () => {
  it.each([
    ["", 0x811c9dc5],
    ["a", 0xe40c292c],
    ["foobar", 0xbf9cf968],
  ])("of %j is the published FNV-1a 32 vector", (text, hash) => {
    expect(fnv1a32(text)).toBe(hash);
  });

  it("hashes the UTF-8 bytes of any string, lone surrogates as U+FFFD like TextEncoder", () => {
    const samples = ["é", "ß€", "日本語", "😀", "a😀b", "\ud800", "x\udc00y", "\ud83d", "\u07ff\u0800\uffff", "\u{10ffff}"];
    for (let i = 0; i < 2_000; i++) {
      samples.push(String.fromCharCode(...Array.from({ length: 1 + (i % 9) }, () => Math.floor(Math.random() * 0x10000))));
    }
    for (const s of samples) expect(fnv1a32(s), JSON.stringify(s)).toBe(reference(s));
  });
});

describe("partitionOf", () => {
  it("is the hash modulo 64, in [0, 64)", () => {
    expect(PARTITIONS).toBe(64);
    expect(partitionOf("a")).toBe(0xe40c292c % 64);
    expect(partitionOf("foobar")).toBe(0xbf9cf968 % 64);
    for (const id of ["-", "_", "0", "9".repeat(64), randomId(64)]) {
      const p = partitionOf(id);
      expect(Number.isInteger(p) && p >= 0 && p < 64).toBe(true);
      expect(p).toBe(reference(id) % 64);
    }
  });

  it("spreads 100,000 random contract ids roughly evenly over the 64 partitions", () => {
    const counts = new Array<number>(PARTITIONS).fill(0);
    const n = 100_000;
    for (let i = 0; i < n; i++) counts[partitionOf(randomId(1 + (i % 64)))]!++;
    const expected = n / PARTITIONS;
    // Chi-square with 63 degrees of freedom: mean 63; a uniform hash exceeds 131 once in a million runs.
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(131);
    expect(Math.min(...counts)).toBeGreaterThan(expected * 0.85);
    expect(Math.max(...counts)).toBeLessThan(expected * 1.15);
  });

  it("also spreads sequential ids (u1, u2, …) evenly", () => {
    const counts = new Array<number>(PARTITIONS).fill(0);
    for (let i = 0; i < 64_000; i++) counts[partitionOf(`u${i}`)]!++;
    expect(Math.min(...counts)).toBeGreaterThan(1_000 * 0.85);
    expect(Math.max(...counts)).toBeLessThan(1_000 * 1.15);
  });
});

describe("partitioned command subjects", () => {
  it("build and parse round trip", () => {
    for (const id of ["-", "_", "0123456789", "A".repeat(64), randomId(20)]) {
      const p = partitionOf(id);
      const subject = partitionSubject(p, "users", "RegisterUser", id);
      expect(subject).toBe(`pcmd.${p}.users.RegisterUser.${id}`);
      expect(parsePartitionSubject(subject)).toEqual({ partition: p, context: "users", commandType: "RegisterUser", aggregateId: id });
    }
  });

  it("refuses to build a subject with a bad partition or token", () => {
    const id = "u1";
    const p = partitionOf(id);
    for (const bad of [-1, 64, 1.5, Number.NaN, (p + 1) % 64]) {
      expect(() => partitionSubject(bad, "users", "RegisterUser", id)).toThrow(NerveError);
    }
    for (const [ctx, cmd, aid] of [["us.ers", "RegisterUser", id], ["users", "Register*", id], ["users", "RegisterUser", "u 1"], ["users", "RegisterUser", ""]]) {
      expect(() => partitionSubject(p, ctx!, cmd!, aid!)).toThrow(expect.objectContaining({ code: "invalid_request" }));
    }
  });

  it("parses only what the server mapping writes for that id", () => {
    const id = "u1";
    const p = partitionOf(id);
    const other = (p + 1) % 64;
    for (const subject of [
      `cmd.users.RegisterUser.${id}`,
      `pcmd.${p}.users.RegisterUser`,
      `pcmd.${p}.users.RegisterUser.${id}.x`,
      `pcmd.${other}.users.RegisterUser.${id}`,
      `pcmd.0${p}.users.RegisterUser.${id}`,
      `pcmd.${p + 64}.users.RegisterUser.${id}`,
      `pcmd.x.users.RegisterUser.${id}`,
      `pcmd.${p}..RegisterUser.${id}`,
      `pcmd.${p}.users..${id}`,
      `pcmd.${p}.users.RegisterUser.`,
    ]) {
      expect(parsePartitionSubject(subject), subject).toBeUndefined();
    }
  });
});
