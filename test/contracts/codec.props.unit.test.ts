/**
 * Properties of the wire (issue #10): every valid command body, query body and event envelope survives
 * both encodings and the schema unchanged; text the contract forbids is refused in any string field at
 * that field's path; and no bytes whatever make decoding throw.
 */
import fc from "fast-check";
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import {
  AnyEvent,
  COMMAND_TYPES,
  CommandDefinitions,
  ContentTypes,
  decode,
  decodeJson,
  decodeMsgPack,
  encode,
  encodeJson,
  encodeMsgPack,
  EVENT_TYPES,
  EventSchemas,
  isNerveError,
  NOT_TEXT_MESSAGE,
  Payloads,
  QUERY_TYPES,
  QueryDefinitions,
  type ContentType,
  type Decoded,
} from "../../contracts/index.js";
import {
  hostileChar,
  plainText,
  stringPaths,
  validCommand,
  validCommandBody,
  validEnvelope,
  validPayload,
  validQuery,
  validQueryBody,
  withHostileString,
  type Path,
} from "../support/arbitraries.js";
import { assertProperty, fuzzSummary } from "../support/fuzz.js";
import { theirRead } from "../support/their-msgpack.js";

fuzzSummary(import.meta.url);

const ENCODINGS: ContentType[] = [ContentTypes.MsgPack, ContentTypes.Json];

/** A property per command, query or event type: each gets this share of FUZZ_RUNS (2,000 at 20,000). */
const PER_TYPE_SHARE = 0.1;

/** The fields that hold free text (CONTRACT.md §1): their refusal must say why. */
const TEXT_FIELDS = new Set([
  "name", "title", "description", "reason", "refund_reason", "payment_id", "display_name", "bio",
  "text", "correlation_id", "causation_id", "locale", "timezone", "avatar_url",
]);

type Schema = z.ZodType;

/** Checks that `value` survives both encodings exactly, and that `schema` accepts it without changing it. */
function expectRoundTrip(schema: Schema, value: unknown): void {
  for (const ct of ENCODINGS) {
    const decoded = decode(ct, encode(ct, value));
    expect(decoded, ct).toStrictEqual({ ok: true, value });
    const parsed = schema.safeParse(decoded.ok ? decoded.value : undefined);
    expect(parsed.error?.issues ?? [], ct).toEqual([]);
    expect(parsed.data, `${ct}: the schema changed the value`).toStrictEqual(value);
  }
  // Plain MessagePack: an independent library reads our bytes the same way.
  expect(theirRead(encodeMsgPack(value))).toStrictEqual(value);
}

/** Checks that `schema` refuses `hostile` with an issue at `path` (saying why, for a text field). */
function expectRefusedAt(schema: Schema, hostile: unknown, path: Path): void {
  const parsed = schema.safeParse(hostile);
  expect(parsed.success, `accepted a NUL or lone surrogate at ${path.join(".")}`).toBe(false);
  const here = parsed.error!.issues.filter((i) => isDeepStrictEqual(i.path, path));
  expect(here.length, `no issue at ${path.join(".")}: ${JSON.stringify(parsed.error!.issues)}`).toBeGreaterThan(0);
  const field = path.findLast((k) => typeof k === "string");
  if (field !== undefined && TEXT_FIELDS.has(field)) expect(here.map((i) => i.message)).toContain(NOT_TEXT_MESSAGE);
  // JSON carries a lone surrogate as an escape, so the same refusal holds after the wire.
  const decoded = decodeJson(encodeJson(hostile));
  expect(decoded.ok && schema.safeParse(decoded.value).success).toBe(false);
}

/** Checks the shape of a decode result: a value, or an `invalid_request` NerveError. */
function expectDecoded(result: Decoded): void {
  if (result.ok) {
    expect(isPlain(result.value), "decoded to something other than plain data").toBe(true);
  } else {
    expect(isNerveError(result.error, "invalid_request"), String(result.error)).toBe(true);
  }
}

/** Whether a value is plain data: null, booleans, numbers, strings, arrays and plain maps (walked without recursion). */
function isPlain(value: unknown): boolean {
  const pending = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (v === null || typeof v === "string" || typeof v === "boolean" || typeof v === "number") continue;
    if (Array.isArray(v) || (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype)) {
      for (const item of Object.values(v)) pending.push(item);
    } else return false;
  }
  return true;
}

// Types whose valid bodies can hold a string at all (the others have only numbers or nothing).
const withStrings = <T>(types: T[], arb: (t: T) => fc.Arbitrary<unknown>): T[] =>
  types.filter((t) => fc.sample(arb(t), { numRuns: 50, seed: 1 }).some((v) => stringPaths(v).length > 0));

describe("round trips: decode(encode(x)) is x and the schema keeps x exactly", () => {
  it.each(COMMAND_TYPES)("command body %s", (type) => {
    assertProperty(fc.property(validCommandBody(type), (body) => expectRoundTrip(CommandDefinitions[type].body, body)), 60, PER_TYPE_SHARE);
  });

  it.each(QUERY_TYPES)("query body %s", (type) => {
    assertProperty(fc.property(validQueryBody(type), (body) => expectRoundTrip(QueryDefinitions[type].body, body)), 60, PER_TYPE_SHARE);
  });

  it.each(EVENT_TYPES)("event envelope %s", (type) => {
    assertProperty(
      fc.property(validEnvelope(type), (envelope) => {
        expectRoundTrip(EventSchemas[type], envelope);
        expect(AnyEvent.safeParse(envelope).data).toStrictEqual(envelope);
      }),
      60,
      PER_TYPE_SHARE,
    );
  });
});

describe("text the contract forbids: NUL or a lone surrogate in any string field is refused at that field", () => {
  it.each(withStrings(COMMAND_TYPES, validCommandBody))("command body %s", (type) => {
    assertProperty(
      fc.property(withHostileString(validCommandBody(type)), ({ path, hostile }) => expectRefusedAt(CommandDefinitions[type].body, hostile, path)),
      60,
      PER_TYPE_SHARE,
    );
  });

  it.each(withStrings(QUERY_TYPES, validQueryBody))("query body %s", (type) => {
    assertProperty(
      fc.property(withHostileString(validQueryBody(type)), ({ path, hostile }) => expectRefusedAt(QueryDefinitions[type].body, hostile, path)),
      60,
      PER_TYPE_SHARE,
    );
  });

  it.each(EVENT_TYPES)("event payload %s", (type) => {
    assertProperty(
      fc.property(withHostileString(validPayload(type)), ({ path, hostile }) => expectRefusedAt(Payloads[type], hostile, path)),
      60,
      PER_TYPE_SHARE,
    );
  });

  it("any event envelope (correlation and causation ids, ids, types, timestamps, payload)", () => {
    assertProperty(
      fc.property(withHostileString(validEnvelope()), ({ valid, path, hostile }) => expectRefusedAt(EventSchemas[valid.event_type], hostile, path)),
      200,
    );
  });

  it("MessagePack cannot carry a lone surrogate: its bytes (WTF-8) are undecodable; a NUL decodes and the schema refuses it", () => {
    assertProperty(
      fc.property(plainText(100), hostileChar(), fc.nat(), (text, bad, at) => {
        const pos = at % (text.length + 1);
        const s = text.slice(0, pos) + bad + text.slice(pos);
        const result = decodeMsgPack(msgPackMap({ refund_reason: wtf8(s) }));
        if (!/\p{Cs}/u.test(s)) {
          expect(result).toStrictEqual({ ok: true, value: { refund_reason: s } });
          expect(CommandDefinitions.RefundOrder.body.safeParse(result.ok && result.value).success).toBe(false);
        } else {
          expect(result.ok).toBe(false);
          expectDecoded(result);
        }
      }),
      200,
    );
  });
});

describe("other refusals", () => {
  it("a valid body with one unknown key more is refused, at the root", () => {
    const key = fc.string({ minLength: 1, maxLength: 20 });
    const schemaOf = { command: (t: string) => CommandDefinitions[t as keyof typeof CommandDefinitions].body, query: (t: string) => QueryDefinitions[t as keyof typeof QueryDefinitions].body };
    const request = fc.oneof(validCommand().map((c) => ({ ...c, kind: "command" as const })), validQuery().map((q) => ({ ...q, kind: "query" as const })));
    assertProperty(
      fc.property(request, key, fc.jsonValue(), ({ kind, type, body }, k, v) => {
        fc.pre(!Object.hasOwn(body, k));
        const parsed = schemaOf[kind](type).safeParse({ ...body, [k]: v });
        expect(parsed.success).toBe(false);
      }),
      200,
    );
  });

  it("a value that is not a map decodes, and every command and query schema refuses it", () => {
    const notAMap = fc.jsonValue().filter((v) => v === null || typeof v !== "object" || Array.isArray(v));
    const schemas: Schema[] = [...COMMAND_TYPES.map((t) => CommandDefinitions[t].body), ...QUERY_TYPES.map((t) => QueryDefinitions[t].body)];
    assertProperty(
      fc.property(notAMap, fc.constantFrom(...ENCODINGS), (value, ct) => {
        const decoded = decode(ct, encode(ct, value));
        expectDecoded(decoded);
        for (const schema of schemas) expect(schema.safeParse(decoded.ok ? decoded.value : undefined).success).toBe(false);
      }),
      200,
      0.25,
    );
  });
});

describe("decoding never throws: any bytes give a value or an invalid_request", () => {
  const decodeAll = (bytes: Uint8Array): void => {
    for (const result of [decodeMsgPack(bytes), decodeJson(bytes), decode(ContentTypes.MsgPack, bytes), decode(ContentTypes.Json, bytes)]) {
      expectDecoded(result);
    }
  };

  it("random bytes", () => {
    assertProperty(fc.property(fc.uint8Array({ maxLength: 512 }), decodeAll), 400);
  });

  it("valid bodies with bytes flipped, cut, inserted or removed", () => {
    const mutation = fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }), kind: fc.constantFrom("flip", "cut", "insert", "remove") });
    const bytesOf = fc.oneof(
      validCommand().map(({ body }) => encodeMsgPack(body)),
      validEnvelope().map((e) => encodeMsgPack(e)),
      validCommand().map(({ body }) => encodeJson(body)),
    );
    assertProperty(
      fc.property(bytesOf, fc.array(mutation, { minLength: 1, maxLength: 4 }), (original, mutations) => {
        let bytes = original;
        for (const { at, byte, kind } of mutations) bytes = mutate(bytes, kind, at, byte);
        decodeAll(bytes);
      }),
      200,
      0.5,
    );
  });

  it("deep nesting, huge announced lengths", () => {
    // Shallow, past the decoder's depth limit (64), and past the JavaScript stack.
    const depth = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 100 }) }, { weight: 1, arbitrary: fc.constantFrom(5_000, 100_000) });
    const nested = fc
      .record({ depth, open: fc.constantFrom(0x91, 0x81, 0xdc), leaf: fc.integer({ min: 0, max: 255 }) })
      .map(({ depth, open, leaf }) => nest(depth, open, leaf));
    const announced = fc
      .record({ token: fc.constantFrom(0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf), length: fc.constantFrom(0xff, 0xffff, 0xffffffff), tail: fc.uint8Array({ maxLength: 16 }) })
      .map(({ token, length, tail }) => Uint8Array.from([token, ...bigEndian(length, 4), ...tail]));
    const jsonNest = depth.map((d) => new TextEncoder().encode("[".repeat(d) + "]".repeat(d)));
    assertProperty(fc.property(fc.oneof(nested, announced, jsonNest), decodeAll), 60, 0.1);
  });
});

// A one-entry MessagePack map whose value is the given UTF-8 (or WTF-8) string bytes.
function msgPackMap(entries: Record<string, Uint8Array>): Uint8Array {
  const out: number[] = [0x80 | Object.keys(entries).length];
  for (const [k, v] of Object.entries(entries)) out.push(...strToken(new TextEncoder().encode(k)), ...strToken(v));
  return Uint8Array.from(out);
}

function strToken(bytes: Uint8Array): number[] {
  const n = bytes.length;
  const head = n < 32 ? [0xa0 | n] : n < 256 ? [0xd9, n] : n < 65536 ? [0xda, ...bigEndian(n, 2)] : [0xdb, ...bigEndian(n, 4)];
  return [...head, ...bytes];
}

function bigEndian(n: number, size: number): number[] {
  return Array.from({ length: size }, (_, i) => Math.floor(n / 256 ** (size - 1 - i)) % 256);
}

// UTF-8 generalised to lone surrogates (WTF-8): what a careless encoder in another language may send.
function wtf8(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.codePointAt(i)!;
    if (c > 0xffff) i++;
    else c = s.charCodeAt(i);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

function mutate(bytes: Uint8Array, kind: string, at: number, byte: number): Uint8Array {
  const pos = bytes.length === 0 ? 0 : at % bytes.length;
  switch (kind) {
    case "flip":
      return bytes.length === 0 ? bytes : Uint8Array.from(bytes, (b, i) => (i === pos ? b ^ (byte || 1) : b));
    case "cut":
      return bytes.subarray(0, pos);
    case "insert":
      return Uint8Array.from([...bytes.subarray(0, pos), byte, ...bytes.subarray(pos)]);
    default:
      return Uint8Array.from([...bytes.subarray(0, pos), ...bytes.subarray(pos + 1)]);
  }
}

// `depth` nested one-element arrays (or one-entry maps keyed by the same nesting) around one byte.
function nest(depth: number, open: number, leaf: number): Uint8Array {
  const unit = open === 0xdc ? [0xdc, 0x00, 0x01] : open === 0x81 ? [0x81, 0xa1, 0x6b] : [0x91];
  const out = new Uint8Array(depth * unit.length + 1);
  for (let i = 0; i < depth; i++) out.set(unit, i * unit.length);
  out[out.length - 1] = leaf;
  return out;
}
