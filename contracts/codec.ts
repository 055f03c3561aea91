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
  return packr.pack(toPlain(value));
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

/** Decodes plain MessagePack; extension types and trailing bytes are refused. */
export function decodeMsgPack(bytes: Uint8Array): Decoded {
  if (bytes.length === 0) return { ok: false, error: new NerveError("invalid_request", "empty MessagePack body") };
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

/** Resolves a `Content-Type` header (absent means MessagePack); undefined when unsupported. */
export function contentTypeOf(header: string | undefined | null): ContentType | undefined {
  if (header === undefined || header === null || header === "") return ContentTypes.MsgPack;
  const base = header.split(";")[0]!.trim().toLowerCase();
  return base === ContentTypes.MsgPack || base === ContentTypes.Json ? base : undefined;
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

// Anything that is not plain data (Date from the timestamp extension, typed arrays from bin, Map, …).
function hasForeignValue(value: unknown, depth = 0): boolean {
  if (depth > 64) return true;
  if (value === null || typeof value !== "object") return typeof value === "bigint";
  if (Array.isArray(value)) return value.some((v) => hasForeignValue(v, depth + 1));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return true;
  for (const k in value) if (hasForeignValue((value as Record<string, unknown>)[k], depth + 1)) return true;
  return false;
}
