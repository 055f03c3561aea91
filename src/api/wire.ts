/** Decoding requests and encoding replies of the command and query API. */
import { isAscii, isUtf8 } from "node:buffer";
import { Match, headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import type { ServiceMsg } from "@nats-io/services";
import type { z } from "zod";
import {
  ContentTypes,
  Headers,
  NerveError,
  contentTypeOf,
  decode,
  encode,
  errorReply,
  errors,
  isText,
  NOT_TEXT_MESSAGE,
  withoutOws,
  type ContentType,
} from "../../contracts/index.js";
import { validTraceparent, validTracestate, type TraceHeaders } from "../tracing/index.js";
import { WireHeaders, headerBlock, plainHeaderValue } from "../nats/wire-headers.js";
import type { ReplyRoom } from "../support/byte-budget.js";

/** Largest request body accepted (the server's max_payload may be larger). */
export const MAX_BODY_BYTES = 64 * 1024;

/** The largest header block a request may carry (bytes); past it `invalid_request`, nothing else read. */
export const MAX_HEADER_BYTES = 16 * 1024;

/** Optional request headers of a command. */
export interface RequestHeaders {
  idempotencyKey?: string | undefined;
  correlationId?: string | undefined;
  causationId?: string | undefined;
  /** The W3C trace context, when valid (an invalid one is ignored: a new trace starts, as W3C asks). */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/**
 * A request header's value by name, its case ignored when the exact name is absent: the contract writes
 * `Idempotency-Key` and `traceparent`, a client may send `idempotency-key` (hand-written) or `Traceparent`
 * (a client that canonicalizes names as MIME does) — taken by the exact name only, an idempotency key in
 * another case was ignored without a word and a retry ran the command twice. The exact name wins when
 * present (even empty); else the first name that matches ignoring case. "" when absent.
 */
function headerValue(h: HeaderReader | undefined, name: string): string | undefined {
  if (!h) return undefined;
  if (h.has(name)) return h.get(name);
  // nats.js's ignore-case lookup copies its keys into an array, filters them into another and lowercases
  // each: five of them for every command, most for headers it does not carry. Its map is walked instead.
  const names = (h as { headers?: unknown }).headers;
  if (!(names instanceof Map)) return h.get(name, Match.IgnoreCase);
  for (const key of (names as Map<string, unknown>).keys()) if (sameIgnoringCase(key, name)) return h.get(key);
  return "";
}

/** `a.toLowerCase() === b.toLowerCase()`, without the two copies when both are ASCII (header names nearly always are). */
function sameIgnoringCase(a: string, b: string): boolean {
  if (a.length !== b.length) return !isAsciiText(a) || !isAsciiText(b) ? a.toLowerCase() === b.toLowerCase() : false;
  for (let i = 0; i < a.length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0x80 || y >= 0x80) return a.toLowerCase() === b.toLowerCase();
    if (x >= 0x41 && x <= 0x5a) x += 0x20;
    if (y >= 0x41 && y <= 0x5a) y += 0x20;
    if (x !== y) return false;
  }
  return true;
}

function isAsciiText(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

function header(h: HeaderReader | undefined, name: string, max: number): string | undefined {
  const v = headerValue(h, name);
  if (v === undefined || v === "") return undefined;
  // Characters as the contract's schemas count them (zod: code points), not UTF-16 units: 128 emoji fit.
  if (v.length > 2 * max || (v.length > max && [...v].length > max)) throw errors.invalidRequest(`${name} is longer than ${max} characters`);
  if (!isText(v)) throw errors.invalidRequest(`${name} ${NOT_TEXT_MESSAGE}`);
  return v;
}

const MALFORMED_HEADERS = "malformed message headers: every header line must be `Key: value` with a printable ASCII key";

/**
 * The request's headers. nats.js parses the header block when it is first read and throws on a line
 * it cannot take (a key with a space or a non-ASCII character): a client's mistake, `invalid_request`.
 *
 * nats.js decodes the block leniently and trims values of any Unicode white space: invalid UTF-8 became
 * U+FFFD (so `Idempotency-Key: k\xFF` and `k\xFE` were one key, and the second command was answered
 * from the first's reply), and `k\u00A0` became `k`. A block that is all printable ASCII (nearly every one)
 * reads the same either way; any other must be valid UTF-8, and its values are read exactly, trimmed of
 * spaces and tabs only.
 */
export function requestHeaderReader(msg: ServiceMsg): HeaderReader | undefined {
  // Before anything reads them: the contract's headers take a few hundred bytes; a block of megabytes only
  // costs (nats.js's decoding, every lookup).
  const size = headerBytes(msg);
  if (size > MAX_HEADER_BYTES) throw errors.invalidRequest(`message headers are larger than ${MAX_HEADER_BYTES} bytes`);
  let h: MsgHdrs | undefined;
  try {
    h = msg.headers;
  } catch {
    throw errors.invalidRequest(MALFORMED_HEADERS);
  }
  const block = rawHeaderBlock(msg);
  if (block === undefined || (isAscii(block) && !hasTrimmedControl(block))) return h;
  if (!isUtf8(block)) throw errors.invalidRequest("message headers must be valid UTF-8");
  return new ExactHeaders(Buffer.from(block.buffer, block.byteOffset, block.byteLength).toString("utf8"));
}

/**
 * Whether an ASCII block holds a control byte other than a tab and the CRLF line ends: one nats.js's decoding
 * trims off a value's ends (\v, \f, a lone \r or \n) where {@link ExactHeaders} keeps it.
 */
function hasTrimmedControl(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) {
    const b = block[i]!;
    if (b >= 0x20 || b === 0x09) continue;
    if (b === 0x0d && block[i + 1] === 0x0a) {
      i++;
      continue;
    }
    return true;
  }
  return false;
}

/**
 * The request's headers to forward to its partition's owner: the block as it came, not nats.js's decoded
 * copy, whose values lost what its decoding trimmed or replaced (the owner must read what the client sent).
 */
export function forwardedHeaders(msg: ServiceMsg): MsgHdrs | undefined {
  const block = rawHeaderBlock(msg);
  return block === undefined ? msg.headers : new WireHeaders([], Uint8Array.from(block));
}

// The header block's length as it came (0 without one).
function headerBytes(msg: ServiceMsg): number {
  return (msg as unknown as { msg?: { _msg?: { hdr?: number } } }).msg?._msg?.hdr ?? 0;
}

// The header block as it came (nats.js's message keeps the bytes, headers and payload, and the block's
// length; a ServiceMsg, @nats-io/services' or routing.ts's, holds the message as `msg`).
function rawHeaderBlock(msg: ServiceMsg): Uint8Array | undefined {
  const m = (msg as unknown as { msg?: { _msg?: { hdr?: number }; _rdata?: Uint8Array } }).msg;
  const length = m?._msg?.hdr;
  const data = m?._rdata;
  return length !== undefined && length > 0 && data !== undefined ? data.subarray(0, length) : undefined;
}

/** What the request's headers are read through: nats.js's headers, or {@link ExactHeaders}. */
export type HeaderReader = Pick<MsgHdrs, "has" | "get">;

/** The header lines of a decoded block, their values trimmed of spaces and tabs only (nats.js's `append` trims any white space). */
class ExactHeaders implements HeaderReader {
  readonly #lines: [name: string, value: string][] = [];

  constructor(block: string) {
    const lines = block.split("\r\n");
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(":");
      if (colon >= 0) this.#lines.push([line.slice(0, colon), withoutOws(line.slice(colon + 1))]);
    }
  }

  has(name: string): boolean {
    return this.#lines.some(([n]) => n === name);
  }

  get(name: string, match: Match = Match.Exact): string {
    const lower = name.toLowerCase();
    const found = this.#lines.find(([n]) => (match === Match.IgnoreCase ? n.toLowerCase() === lower : n === name));
    return found ? found[1] : "";
  }
}

/** Reads the content type; an unsupported one, or a malformed header block, is `invalid_request` (answered in JSON). */
export function requestContentType(msg: ServiceMsg, h: HeaderReader | undefined = requestHeaderReader(msg)): ContentType {
  const value = headerValue(h, Headers.ContentType);
  if (value !== undefined && !isText(value)) throw errors.invalidRequest(`${Headers.ContentType} ${NOT_TEXT_MESSAGE}`);
  const ct = contentTypeOf(value);
  if (!ct) throw errors.invalidRequest("Content-Type must be application/msgpack or application/json");
  return ct;
}

// A trace header that is not text is refused like any other; a text one that is not W3C is ignored.
function traceHeader(h: HeaderReader | undefined, name: string): string | undefined {
  const v = headerValue(h, name);
  if (v !== undefined && !isText(v)) throw errors.invalidRequest(`${name} ${NOT_TEXT_MESSAGE}`);
  return v || undefined;
}

/** The request's trace context (W3C `traceparent` and `tracestate`), when it carries a valid one. */
export function requestTrace(msg: ServiceMsg, h: HeaderReader | undefined = requestHeaderReader(msg)): TraceHeaders | undefined {
  const traceparent = validTraceparent(traceHeader(h, Headers.TraceParent));
  const tracestate = traceHeader(h, Headers.TraceState);
  return traceparent ? { traceparent, tracestate: validTracestate(tracestate) } : undefined;
}

/** The request's Correlation-Id when it carries a valid one (for a failure's log line: never throws). */
export function correlationOf(msg: ServiceMsg): string | undefined {
  try {
    return header(requestHeaderReader(msg), Headers.CorrelationId, 128);
  } catch {
    return undefined;
  }
}

/** Reads the optional causal, idempotency and trace context headers. */
export function requestHeaders(msg: ServiceMsg, h: HeaderReader | undefined = requestHeaderReader(msg)): RequestHeaders {
  const trace = requestTrace(msg, h);
  return {
    idempotencyKey: header(h, Headers.IdempotencyKey, 128),
    correlationId: header(h, Headers.CorrelationId, 128),
    causationId: header(h, Headers.CausationId, 128),
    traceparent: trace?.traceparent,
    tracestate: trace?.tracestate,
  };
}

/** Decodes and validates a body against a schema; every failure is a clear `invalid_request`. */
export function parseBody<T extends z.ZodType>(msg: ServiceMsg, ct: ContentType, schema: T): z.infer<T> {
  // nats.js makes a new view of the payload at every read of `data`.
  const data = msg.data;
  if (data.length > MAX_BODY_BYTES) throw errors.invalidRequest(`body is larger than ${MAX_BODY_BYTES} bytes`);
  const decoded = decode(ct, data);
  if (!decoded.ok) throw decoded.error;
  if (decoded.value === null || typeof decoded.value !== "object" || Array.isArray(decoded.value)) {
    throw errors.invalidRequest("body must be a map");
  }
  const parsed = schema.safeParse(decoded.value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }));
    throw errors.invalidRequest(`invalid body: ${issues.map((i) => `${i.path || "(body)"} ${i.message}`).join("; ")}`, { issues });
  }
  return parsed.data;
}

/** The reply header naming the instance that answered (CONTRACT.md §8). */
export const INSTANCE_HEADER = "Nerve-Instance";

/** A reply's headers as nats-core builds them: an error reply's (respondError adds its two), a success reply's where {@link okHeaders} cannot write the block. */
export function replyHeaders(ct: ContentType, instance: string | undefined): MsgHdrs {
  const h = natsHeaders();
  h.set(Headers.ContentType, ct);
  if (instance) h.set(INSTANCE_HEADER, instance);
  return h;
}

/** A success reply's header block by content type, then instance ("" for none): a process has one instance, two content types. */
const okBlocks = new Map<string, Map<string, { pairs: [string, string][]; block: Uint8Array }>>();

/**
 * A success reply's headers: the same as {@link replyHeaders} gives, written out once per content type
 * and instance (src/nats/wire-headers.ts) instead of built and encoded by nats-core for every reply.
 */
export function okHeaders(ct: ContentType, instance: string | undefined): MsgHdrs {
  let byInstance = okBlocks.get(ct);
  if (!byInstance) okBlocks.set(ct, (byInstance = new Map()));
  let b = byInstance.get(instance ?? "");
  if (!b) {
    if (instance && !plainHeaderValue(instance)) return replyHeaders(ct, instance);
    const pairs: [string, string][] = instance ? [[Headers.ContentType, ct], [INSTANCE_HEADER, instance]] : [[Headers.ContentType, ct]];
    b = { pairs, block: headerBlock(pairs) };
    if (byInstance.size < 64) byInstance.set(instance ?? "", b);
  }
  return new WireHeaders(b.pairs, b.block);
}

/** Sends a success reply in the request's encoding, naming the answering instance. */
export function replyOk(msg: ServiceMsg, ct: ContentType, body: unknown, instance?: string): void {
  replyOkEncoded(msg, ct, encode(ct, body), instance);
}

/** {@link replyOk} with the body already encoded (to check its size first: see {@link fitsOneMessage}). */
export function replyOkEncoded(msg: ServiceMsg, ct: ContentType, data: Uint8Array, instance?: string): void {
  msg.respond(data, { headers: okHeaders(ct, instance) });
}

/** NATS's max_payload when the server does not say. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** Room left in a message for its headers (the server counts them in max_payload). */
const HEADER_ROOM = 4096;

/**
 * Whether a reply body of `bytes` fits in one message of a server with `maxPayload` (NATS's default 1 MiB
 * when unknown), its headers included: a larger one is refused by nats.js as it is sent, and the
 * requester would only see a failure.
 */
export function fitsOneMessage(bytes: number, maxPayload: number | undefined): boolean {
  return bytes + HEADER_ROOM <= (maxPayload ?? DEFAULT_MAX_PAYLOAD);
}

/**
 * The refusal of an answer to `query` of `bytes` that one message of a server with `maxPayload` does not
 * carry, saying how to page where one can. `atLeast`: the answer was not built whole, and `bytes` is what
 * was measured before it was plain that it cannot fit (details' `min_bytes`, not named in the message:
 * with the headers' room kept, it may be below max_payload).
 */
export function answerTooLarge(query: string, bytes: number, maxPayload: number | undefined, atLeast = false): NerveError {
  return errors.invalidRequest(
    `the answer to ${query} is ${atLeast ? "" : `${bytes} bytes, `}more than one NATS message carries (max_payload ${maxPayload ?? "1 MiB"})${query === "History" ? ": ask for it in pages (after_version, limit)" : ""}`,
    { [atLeast ? "min_bytes" : "bytes"]: bytes, max_payload: maxPayload ?? null },
  );
}

/** The room of a reply to `query` in encoding `ct` on a server with `maxPayload` (see {@link fitsOneMessage}). */
export function replyRoom(query: string, ct: ContentType, maxPayload: number | undefined): ReplyRoom {
  const bytesOf = (value: unknown) => encode(ct, value).length;
  // What `{ ok: true, result }` adds to its result, in this encoding.
  const envelope = bytesOf({ ok: true, result: null }) - bytesOf(null);
  return {
    resultBytes: (maxPayload ?? DEFAULT_MAX_PAYLOAD) - HEADER_ROOM - envelope,
    bytesOf,
    tooLarge: (resultBytes) => answerTooLarge(query, resultBytes + envelope, maxPayload, true),
  };
}

/**
 * The refusal of a number of the request that the database found beyond its column (PostgreSQL's 22003,
 * which the readers' own bounds keep from it: see INTEGER_COLUMN_MAX): the request's mistake, not `internal`
 * — logged, the statement in its message — and naming no SQL.
 */
export function outOfRange(): NerveError {
  return errors.invalidRequest("a number in the request is beyond what the database holds");
}

/** Sends the contract's failure reply with the Nats-Service-Error headers, naming the answering instance. */
export function replyError(msg: ServiceMsg, ct: ContentType | undefined, err: NerveError, instance?: string): void {
  const enc = ct ?? ContentTypes.Json;
  const description = err.message.replace(/[\r\n]+/g, " ").slice(0, 512);
  msg.respondError(err.status, description, encode(enc, errorReply(err)), { headers: replyHeaders(enc, instance) });
}
