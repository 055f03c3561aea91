/** A command's fresh root trace context with tracing off (root-traceparent.ts): W3C's format, random ids, never all zeros. */
import { parseTraceParent } from "@opentelemetry/core";
import { describe, expect, it } from "vitest";
import { rootTraceparent, traceparentFromBytes, validTraceparent } from "../../src/tracing/index.js";

const W3C_NOT_SAMPLED = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-00$/;

describe("rootTraceparent", () => {
  it("is a W3C traceparent, version 00, not sampled, that Nerve and OpenTelemetry both accept", () => {
    for (let i = 0; i < 1_000; i++) {
      const tp = rootTraceparent();
      expect(tp).toMatch(W3C_NOT_SAMPLED);
      expect(validTraceparent(tp)).toBe(tp);
      expect(parseTraceParent(tp)).toMatchObject({ traceId: tp.slice(3, 35), spanId: tp.slice(36, 52), traceFlags: 0 });
    }
  });

  it("draws new ids every time, across refills of its pool", () => {
    const seen = new Set<string>();
    const ids = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      const tp = rootTraceparent();
      seen.add(tp.slice(3, 35));
      ids.add(tp.slice(36, 52));
    }
    expect(seen.size).toBe(1_000);
    expect(ids.size).toBe(1_000);
  });
});

describe("traceparentFromBytes", () => {
  const bytes = Buffer.from("0af7651916cd43dd8448eb211c80319cb7ad6b7169203331", "hex");

  it("spells the first 16 bytes as the trace id and the next 8 as the parent id", () => {
    expect(traceparentFromBytes(bytes, 0)).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
    expect(traceparentFromBytes(Buffer.concat([Buffer.alloc(5), bytes]), 5)).toBe("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
  });

  it("refuses an all-zero trace id or parent id (W3C: invalid), so rootTraceparent draws again", () => {
    expect(traceparentFromBytes(Buffer.concat([Buffer.alloc(16), bytes.subarray(16)]), 0)).toBeUndefined();
    expect(traceparentFromBytes(Buffer.concat([bytes.subarray(0, 16), Buffer.alloc(8)]), 0)).toBeUndefined();
    expect(traceparentFromBytes(Buffer.alloc(24), 0)).toBeUndefined();
    expect(traceparentFromBytes(Buffer.concat([Buffer.alloc(15), Buffer.from([1]), Buffer.alloc(7), Buffer.from([1])]), 0)).toBe(`00-${"0".repeat(31)}1-${"0".repeat(15)}1-00`);
  });
});

describe("validTraceparent", () => {
  const id = "0af7651916cd43dd8448eb211c80319c";
  const parent = "b7ad6b7169203331";

  it("keeps a version 00 traceparent as it is, trimmed", () => {
    expect(validTraceparent(`00-${id}-${parent}-01`)).toBe(`00-${id}-${parent}-01`);
    expect(validTraceparent(` 00-${id}-${parent}-00 `)).toBe(`00-${id}-${parent}-00`);
  });

  it("reads a later version's first four fields and writes them as version 00, dropping what follows (was: carried whole, any length)", () => {
    const future = `01-${id}-${parent}-03-${"x".repeat(1_000)}`;
    expect(validTraceparent(future)).toBe(`00-${id}-${parent}-03`);
    expect(validTraceparent(`cc-${id}-${parent}-01`)).toBe(`00-${id}-${parent}-01`);
  });

  it("ignores what W3C calls invalid", () => {
    for (const bad of [`ff-${id}-${parent}-01`, `00-${"0".repeat(32)}-${parent}-01`, `00-${id}-${"0".repeat(16)}-01`, `00-${id.toUpperCase()}-${parent}-01`, `00-${id}-${parent}-01-extra`, "not-a-trace", ""]) {
      expect(validTraceparent(bad), bad).toBeUndefined();
    }
  });
});
