/** Codecs of the wire: plain MessagePack (no extensions) and JSON; decoding never throws. */
import { Packr, Unpackr } from "msgpackr";
import { NerveError } from "./errors.js";

/** Content types the API speaks. */
export const ContentTypes = { MsgPack: "application/msgpack", Json: "application/json" } as const;
/** A supported content type. */
export type ContentType = (typeof ContentTypes)[keyof typeof ContentTypes];

// Plain, interoperable MessagePack: no record extension, no structured clone, maps decode as objects.
const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true, int64AsType: "number" });

/** The outcome of decoding untrusted bytes. */
export type Decoded<T = unknown> = { ok: true; value: T } | { ok: false; error: NerveError };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes a value as plain MessagePack. */
export function encodeMsgPack(value: unknown): Uint8Array {
  // Nearly everything Nerve encodes is plain already (envelopes, replies): checked without a copy.
  return packr.pack(isPlain(value) ? value : toPlain(value));
}

// Whether `toPlain` would return an equal value: no undefined, Date, class instance, or integer beyond
// 32 bits anywhere in it. Allocates nothing.
function isPlain(value: unknown): boolean {
  switch (typeof value) {
    case "number":
      return !(Number.isSafeInteger(value) && (value > 0xffffffff || value < -0x80000000));
    case "undefined":
      return false;
    case "object": {
      if (value === null || value instanceof Uint8Array) return true;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!isPlain(value[i])) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const k in value) {
        if (!Object.hasOwn(value, k) || !isPlain((value as Record<string, unknown>)[k])) return false;
      }
      return true;
    }
    default:
      return true;
  }
}

// JSON semantics for what MessagePack would otherwise carry as extensions: undefined keys are
// dropped (null in arrays), integers beyond 32 bits become int64 rather than msgpackr's float64.
function toPlain(value: unknown): unknown {
  switch (typeof value) {
    case "number":
      return Number.isSafeInteger(value) && (value > 0xffffffff || value < -0x80000000) ? BigInt(value) : value;
    case "undefined":
      return null;
    case "object": {
      if (value === null || value instanceof Uint8Array) return value;
      if (Array.isArray(value)) return value.map(toPlain);
      if (value instanceof Date) return value.toISOString();
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toPlain(v);
      return out;
    }
    default:
      return value;
  }
}

/** Decodes plain MessagePack; extension types, invalid UTF-8 strings and trailing bytes are refused. */
export function decodeMsgPack(bytes: Uint8Array): Decoded {
  if (bytes.length === 0) return { ok: false, error: new NerveError("invalid_request", "empty MessagePack body") };
  // msgpackr quietly honours its own extensions (ext 0 = undefined, records, bundled strings) and
  // returns plain-looking values for them, so the bytes are checked before msgpackr sees them.
  const refusal = scanPlainMsgPack(bytes);
  if (refusal !== undefined) return { ok: false, error: new NerveError("invalid_request", `undecodable MessagePack body: ${refusal}`) };
  try {
    const value = unpackr.unpack(bytes);
    if (hasForeignValue(value)) return { ok: false, error: new NerveError("invalid_request", "MessagePack extension types are not accepted") };
    return { ok: true, value };
  } catch (cause) {
    return { ok: false, error: new NerveError("invalid_request", `undecodable MessagePack body: ${(cause as Error).message}`, { cause }) };
  }
}

/** Encodes a value as UTF-8 JSON. */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Decodes UTF-8 JSON. */
export function decodeJson(bytes: Uint8Array): Decoded {
  try {
    return { ok: true, value: JSON.parse(decoder.decode(bytes)) };
  } catch (cause) {
    return { ok: false, error: new NerveError("invalid_request", `undecodable JSON body: ${(cause as Error).message}`, { cause }) };
  }
}

// The one parameter a body's media type may carry: the charset every body is read in (quoted or not, any case).
const UTF8_CHARSET = /^[ \t]*charset[ \t]*=[ \t]*("utf-8"|utf-8)[ \t]*$/i;

/**
 * Without the spaces and tabs around it: a header's white space (HTTP's OWS), not Unicode's. A scan from
 * both ends: the regular expression it replaces (`/^[ \t]+|[ \t]+$/g`) tried its second branch from every
 * position of a run of spaces, quadratic in the run — a Content-Type of 120,000 spaces and a letter held
 * the event loop 26 s (NATS-side exhaustion audit).
 */
export function withoutOws(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && (s.charCodeAt(start) === 0x20 || s.charCodeAt(start) === 0x09)) start++;
  while (end > start && (s.charCodeAt(end - 1) === 0x20 || s.charCodeAt(end - 1) === 0x09)) end--;
  return start === 0 && end === s.length ? s : s.slice(start, end);
}

/**
 * Resolves a `Content-Type` header (absent, empty or blank means MessagePack); undefined when
 * unsupported. The media type is matched ignoring case and the spaces and tabs around it — only those,
 * as header values are read (`\u00A0application/json` is not JSON, and `\u00A0` alone was refused while
 * the media type was trimmed of Unicode white space); its only parameter allowed is `charset=utf-8` — a
 * body declared in another charset (`application/json; charset=iso-8859-1`) was read as UTF-8 all the
 * same, and junk after the type was ignored.
 */
export function contentTypeOf(header: string | undefined | null): ContentType | undefined {
  if (header === undefined || header === null || withoutOws(header) === "") return ContentTypes.MsgPack;
  const [type, ...params] = header.split(";");
  const base = withoutOws(type!).toLowerCase();
  if (base !== ContentTypes.MsgPack && base !== ContentTypes.Json) return undefined;
  return params.every((p) => UTF8_CHARSET.test(p)) ? base : undefined;
}

/** Encodes in the given content type. */
export function encode(contentType: ContentType, value: unknown): Uint8Array {
  return contentType === ContentTypes.Json ? encodeJson(value) : encodeMsgPack(value);
}

/** Decodes in the given content type; an empty body is an empty map (commands without fields). */
export function decode(contentType: ContentType, bytes: Uint8Array): Decoded {
  if (bytes.length === 0) return { ok: true, value: {} };
  return contentType === ContentTypes.Json ? decodeJson(bytes) : decodeMsgPack(bytes);
}

// Byte lengths of fixed-size payloads and of length prefixes, by token.
const FIXED: Record<number, number> = { 0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8 };
const PREFIXED: Record<number, { size: number; kind: "bin" | "str" | "array" | "map" }> = {
  0xc4: { size: 1, kind: "bin" }, 0xc5: { size: 2, kind: "bin" }, 0xc6: { size: 4, kind: "bin" },
  0xd9: { size: 1, kind: "str" }, 0xda: { size: 2, kind: "str" }, 0xdb: { size: 4, kind: "str" },
  0xdc: { size: 2, kind: "array" }, 0xdd: { size: 4, kind: "array" }, 0xde: { size: 2, kind: "map" }, 0xdf: { size: 4, kind: "map" },
};

// Walks the token stream without recursion: exactly one value, no extension or never-used token,
// nothing truncated, nothing trailing, strings in valid UTF-8 (msgpackr would silently put U+FFFD
// in their place, and other libraries decode the same bytes differently). Returns why the bytes
// are refused, or undefined.
function scanPlainMsgPack(bytes: Uint8Array): string | undefined {
  let pos = 0;
  let pending = 1; // values still to read
  while (pending > 0) {
    if (pending > bytes.length - pos) return "unexpected end of data";
    const token = bytes[pos++]!;
    pending--;
    if (token <= 0x7f || token >= 0xe0 || token === 0xc0 || token === 0xc2 || token === 0xc3) continue;
    if (token <= 0x8f) pending += 2 * (token & 0x0f);
    else if (token <= 0x9f) pending += token & 0x0f;
    else if (token <= 0xbf) {
      if (!isUtf8(bytes, pos, (pos += token & 0x1f))) return "a string is not valid UTF-8";
    } else if (FIXED[token] !== undefined) {
      pos += FIXED[token];
    } else {
      const prefixed = PREFIXED[token];
      if (prefixed === undefined) return `token 0x${token.toString(16)} is an extension or never used`;
      if (pos + prefixed.size > bytes.length) return "unexpected end of data";
      let length = 0;
      for (let i = 0; i < prefixed.size; i++) length = length * 256 + bytes[pos++]!;
      if (prefixed.kind === "array") pending += length;
      else if (prefixed.kind === "map") pending += 2 * length;
      else if (prefixed.kind === "bin") pos += length;
      else if (!isUtf8(bytes, pos, (pos += length))) return "a string is not valid UTF-8";
    }
    if (pos > bytes.length) return "unexpected end of data";
  }
  return pos === bytes.length ? undefined : "trailing bytes after the value";
}

function isUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  if (end > bytes.length) return true; // truncation is reported by the caller
  for (let i = start; i < end; i++) if (bytes[i]! >= 0x80) return isUtf8Strict(bytes.subarray(start, end));
  return true; // plain ASCII, the common case, needs no decoder
}

function isUtf8Strict(bytes: Uint8Array): boolean {
  try {
    decoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

// Anything that is not plain data (Date from the timestamp extension, typed arrays from bin, Map, …).
function hasForeignValue(value: unknown, depth = 0): boolean {
  if (depth > 64) return true;
  if (value === null || typeof value !== "object") return typeof value === "bigint" || value === undefined;
  if (Array.isArray(value)) return value.some((v) => hasForeignValue(v, depth + 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return true;
  for (const k in value) if (hasForeignValue((value as Record<string, unknown>)[k], depth + 1)) return true;
  return false;
}
