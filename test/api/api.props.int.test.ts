/**
 * Property tests of the NATS API (issue #10): whatever a client sends — any subject under `cmd.>`,
 * `query.>` and `pcmd.>`, any header block, any body — the reply is one of the contract's (never `internal` for a
 * client's mistake), a refused command stores nothing, valid text comes back exactly, and the service
 * stays up with a log free of errors. Every property runs on SQLite and, when it answers, PostgreSQL.
 *
 * Requests go through {@link RawNats}, which writes the protocol itself, so header blocks are sent
 * byte for byte (nats.js would refuse to build the malformed ones a client in another language can).
 *
 * Run counts (per database): in CI 200 refused commands, 400 arbitrary requests, 80 text round trips,
 * 300 searches — about 12 s a database. `npm run fuzz` (`FUZZ_RUNS=20000`) scales them less than the
 * standard scaling so that the file stays within minutes: FUZZ_RUNS arbitrary requests, FUZZ_RUNS / 2
 * searches, FUZZ_RUNS / 10 refused commands and FUZZ_RUNS / 25 round trips (each of those cases is
 * several commands, queries and fsyncs) — see {@link params}.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import {
  COMMAND_TYPES,
  CONTEXTS,
  CommandDefinitions,
  CommandSuccess,
  ContentTypes,
  Contexts,
  ErrorCatalogue,
  ErrorReply,
  QUERY_TYPES,
  QueryDefinitions,
  contentTypeOf,
  decodeJson,
  decodeMsgPack,
  deriveAccessId,
  encodeJson,
  encodeMsgPack,
  isBlank,
  isText,
  querySuccess,
  type CommandType,
  type Context,
  type QueryType,
} from "../../contracts/index.js";
import { PARTITIONS, partitionOf } from "../../src/cluster/index.js";
import { captureLog, command, postgresAvailable, query, startTestNerve, tempPostgres, type CapturedLog, type TempPostgres, type TestNerve } from "../support/index.js";
import { accessId, contractText, hostileChar, hostileText, id, insertAt, plainText, traceId, validCommandBody, validQueryBody } from "../support/arbitraries.js";
import { fuzzParams, fuzzSummary, fuzzing, runs } from "../support/fuzz.js";
import { packLoosely } from "./loose-msgpack.js";
import { RawNats, headerBlock, type RawReply } from "./raw-nats.js";

fuzzSummary(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Run counts

/** Share of the standard fuzz scaling for the properties that write: each case is several commands with an fsync. */
const HEAVY = 0.1;

/** fast-check parameters: `ciRuns` in CI; when fuzzing, the standard scaling times `fuzzShare`. */
function params<T>(ciRuns: number, fuzzShare = 1): fc.Parameters<T> {
  const p = fuzzParams<T>(ciRuns);
  return fuzzing ? { ...p, numRuns: Math.max(ciRuns, Math.round(runs(ciRuns) * fuzzShare)) } : p;
}

/** A test timeout for a property of `ciRuns` whose case takes about `msPerCase` at most. */
const timeoutFor = (ciRuns: number, msPerCase: number, fuzzShare = 1) =>
  60_000 + (fuzzing ? Math.round(runs(ciRuns) * fuzzShare) : ciRuns) * msPerCase;

// ---------------------------------------------------------------------------------------------
// What a client can send

const QUERY_CONTEXTS: string[] = [...new Set(Object.values(QueryDefinitions).map((q) => q.context))];
const AGGREGATE_QUERIES = { users: ["GetUser", "user_id"], policies: ["GetPolicy", "policy_id"], courses: ["GetCourse", "course_id"], orders: ["GetOrder", "order_id"], access: ["GetAccess", "access_id"] } as const;

const ID_CHARS = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"];
// Anything a subject token can hold on the wire: not empty, no ASCII whitespace (the protocol's separator), no dot.
const JUNK_CHARS = ["*", ">", "\u0000", "\u0001", "\u007f", "%", "%00", "$", ":", "/", "\\", '"', "'", "ä", "😀", "\u00a0", "\u2028", "\ufeff", "\ufffd", "#"];
const junkToken = () => fc.string({ unit: fc.oneof(fc.constantFrom(...ID_CHARS), fc.constantFrom(...JUNK_CHARS)), minLength: 1, maxLength: 70 });

const contextToken = () =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...CONTEXTS) },
    { weight: 2, arbitrary: fc.constantFrom(...QUERY_CONTEXTS, "USERS", "user") },
    { weight: 1, arbitrary: junkToken() },
  );
const typeToken = () =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...COMMAND_TYPES, ...QUERY_TYPES) },
    { weight: 1, arbitrary: fc.constantFrom("constructor", "__proto__", "toString", "hasOwnProperty", "registerUser") },
    { weight: 1, arbitrary: junkToken() },
  );
const idToken = () =>
  fc.oneof(
    { weight: 6, arbitrary: id() },
    { weight: 1, arbitrary: accessId() },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 65, maxLength: 80 }) },
    { weight: 2, arbitrary: junkToken() },
  );

/** A partition token of `pcmd.<p>.…`: the id's own partition, another one, or none at all. */
const partitionToken = (id: string) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constant(String(partitionOf(id))) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: PARTITIONS - 1 }).map(String) },
    { weight: 1, arbitrary: fc.constantFrom("64", "-1", "01", "1e1", "0x1", "+1") },
    { weight: 1, arbitrary: junkToken() },
  );

/**
 * A subject: `cmd.<context>.<type>.<id>`, `query.<context>.<type>`, or the partition-routed form
 * `pcmd.<p>.<context>.<type>.<id>` a client may also send (CONTRACT.md §8) — each part valid or not,
 * sometimes a token more or less.
 */
const subjectArb = (): fc.Arbitrary<string> =>
  fc
    .record({
      root: fc.constantFrom("cmd", "cmd", "cmd", "query", "query", "pcmd"),
      context: contextToken(),
      type: typeToken(),
      id: idToken(),
      extra: fc.oneof({ weight: 8, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.array(junkToken(), { minLength: 1, maxLength: 2 }) }),
      short: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    })
    .chain(({ root, context, type, id, extra, short }) =>
      (root === "pcmd" ? partitionToken(id).map((p) => [root, p, context, type, id]) : fc.constant(root === "cmd" ? [root, context, type, id] : [root, context, type])).map((parts) =>
        [...(short ? parts.slice(0, -1) : parts), ...extra].join("."),
      ),
    );

/**
 * Whether the `nerve` service has an endpoint for `subject`: `cmd.<context>.>` and `query.<context>.>`, the
 * catch-alls `cmd.>` and `query.>` (any context: two tokens or more), and `pcmd.<p>.>` for each partition
 * the instance holds.
 */
function served(subject: string, partitions: readonly number[]): boolean {
  const t = subject.split(".");
  if (t.length < 2 || t.some((x) => x === "")) return false;
  if (t[0] === "cmd" || t[0] === "query") return true;
  if (t[0] === "pcmd") return t.length >= 3 && partitions.some((p) => String(p) === t[1]);
  return false;
}

/** The command or query type a subject names, when it names one. */
function typeOf(subject: string): { kind: "cmd"; type: CommandType } | { kind: "query"; type: QueryType } | undefined {
  const tokens = subject.split(".");
  const [root, , type] = tokens[0] === "pcmd" ? tokens.slice(1) : tokens;
  if (tokens[0] === "pcmd") return type && Object.hasOwn(CommandDefinitions, type) ? { kind: "cmd", type: type as CommandType } : undefined;
  if (root === "cmd" && type && Object.hasOwn(CommandDefinitions, type)) return { kind: "cmd", type: type as CommandType };
  if (root === "query" && type && Object.hasOwn(QueryDefinitions, type)) return { kind: "query", type: type as QueryType };
  return undefined;
}

type Body = Record<string, unknown>;
type Path = (string | number)[];

/** Every path inside a value below its root: map keys and array indexes. */
function paths(value: unknown, at: Path = []): Path[] {
  const here = at.length > 0 ? [at] : [];
  if (Array.isArray(value)) return [...here, ...value.flatMap((v, i) => paths(v, [...at, i]))];
  if (value !== null && typeof value === "object") return [...here, ...Object.entries(value).flatMap(([k, v]) => paths(v, [...at, k]))];
  return here;
}
/** The value at a path; a negative index counts from an array's end. */
const getAt = (v: unknown, p: Path): unknown =>
  p.reduce<unknown>((x, k) => (Array.isArray(x) && typeof k === "number" ? x.at(k) : (x as Record<string | number, unknown>)?.[k]), v);
function setAt(v: Body, p: Path, replacement: unknown): Body {
  const copy = structuredClone(v);
  (getAt(copy, p.slice(0, -1)) as Record<string | number, unknown>)[p.at(-1)!] = replacement;
  return copy;
}

/** A value of another JSON type than `v`, never one its field could accept (null only stands in for nothing). */
function wrongTypeFor(v: unknown, pick: number): unknown {
  const candidates =
    typeof v === "string" ? [7, true, [], {}, [v]]
    : typeof v === "number" ? [String(v), true, [], {}, 1.5, -1]
    : typeof v === "boolean" ? [1, "true", []]
    : v === null ? [5, true, []]
    : Array.isArray(v) ? ["x", 5, {}]
    : ["x", 5, [], true];
  return candidates[pick % candidates.length];
}

/** How a valid body is spoiled: exactly one change, each one the schemas must refuse. */
type Spoil = { how: "hostile"; pick: number; char: string; at: number } | { how: "wrong-type"; pick: number; variant: number } | { how: "extra-key"; pick: number; key: string };

const spoilArb = (): fc.Arbitrary<Spoil> =>
  fc.oneof(
    fc.record({ how: fc.constant("hostile" as const), pick: fc.nat(), char: hostileChar(), at: fc.nat() }),
    fc.record({ how: fc.constant("wrong-type" as const), pick: fc.nat(), variant: fc.nat() }),
    fc.record({ how: fc.constant("extra-key" as const), pick: fc.nat(), key: fc.oneof(fc.constantFrom("admin", "user_id", "aggregate_id", "constructor", "__proto__", "$where", ""), fc.string({ maxLength: 12 })) }),
  );

/** `valid` with one change: a string spoiled by a NUL or lone surrogate, a value of the wrong type, or an unknown key. */
function spoil(valid: Body, s: Spoil): Body {
  const all = paths(valid);
  const strings = all.filter((p) => typeof getAt(valid, p) === "string");
  if (s.how === "hostile" && strings.length > 0) {
    const p = strings[s.pick % strings.length]!;
    return setAt(valid, p, insertAt(getAt(valid, p) as string, s.char, s.at));
  }
  if (s.how === "wrong-type" && all.length > 0) {
    const p = all[s.pick % all.length]!;
    return setAt(valid, p, wrongTypeFor(getAt(valid, p), s.variant));
  }
  // An unknown key, at the root or in a nested map (every map of a body is strict).
  const maps: Path[] = [[], ...all.filter((p) => { const v = getAt(valid, p); return v !== null && typeof v === "object" && !Array.isArray(v); })];
  const at = maps[s.pick % maps.length]!;
  const target = at.length === 0 ? valid : (getAt(valid, at) as Body);
  let key = s.how === "extra-key" ? s.key : "unexpected";
  while (Object.hasOwn(target, key)) key += "_";
  const copy = structuredClone(valid);
  const into = at.length === 0 ? copy : (getAt(copy, at) as Body);
  Object.defineProperty(into, key, { value: s.how === "extra-key" ? true : 1, enumerable: true, writable: true, configurable: true });
  return copy;
}

/** A body, as the client writes it. */
type BodySpec =
  | { kind: "value"; encoding: "msgpack" | "json"; value: unknown }
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "oversized"; encoding: "msgpack" | "json"; value: Body; pad: number };

/**
 * A value as a client writes it: JSON, or MessagePack whose strings keep lone surrogates (WTF-8, invalid
 * UTF-8: msgpackr itself would replace them by U+FFFD, hiding them from the server).
 */
function encodeBody(value: unknown, json: boolean): Uint8Array {
  try {
    return json ? encodeJson(value) : packLoosely(value);
  } catch {
    try {
      return encodeMsgPack(value); // what only msgpackr can write (fc.anything's odd corners)
    } catch {
      return new Uint8Array(); // nor that: an empty body then
    }
  }
}

function bodyBytes(b: BodySpec): Uint8Array {
  if (b.kind === "bytes") return b.bytes;
  return encodeBody(b.kind === "oversized" ? { ...b.value, pad: "x".repeat(b.pad) } : b.value, b.encoding === "json");
}

const validBodyFor = (kind: "cmd" | "query", type: string): fc.Arbitrary<Body> =>
  (kind === "cmd" ? validCommandBody(type as CommandType) : validQueryBody(type as QueryType)) as fc.Arbitrary<Body>;

/** Any body, valid or not, for a subject (its own type's valid bodies when it names one). */
function bodyArb(subject: string): fc.Arbitrary<BodySpec> {
  const named = typeOf(subject);
  const valid: fc.Arbitrary<Body> = named
    ? validBodyFor(named.kind, named.type)
    : fc.constantFrom(...COMMAND_TYPES).chain((t) => validBodyFor("cmd", t));
  const encoding = fc.constantFrom("msgpack" as const, "json" as const);
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("value" as const), encoding, value: valid }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("value" as const), encoding, value: fc.tuple(valid, spoilArb()).map(([v, s]) => spoil(v, s)) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("value" as const), encoding, value: fc.anything({ maxDepth: 3, withNullPrototype: true, withObjectString: true }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("value" as const), encoding, value: fc.oneof(fc.json(), fc.constant(null), fc.constant([]), fc.string()) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("bytes" as const), bytes: fc.uint8Array({ maxLength: 300 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("bytes" as const), bytes: fc.constantFrom(new Uint8Array(), new Uint8Array([0xc1]), new Uint8Array([0x80]), new Uint8Array([0xd4, 0xff, 0]), Buffer.from("{}"), Buffer.from('{"a":1}x'), Buffer.from("\u0000")) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("oversized" as const), encoding, value: valid, pad: fc.integer({ min: 64 * 1024, max: 200 * 1024 }) }) },
  );
}

/** A header block, as the client writes it. */
type HeaderSpec = { kind: "none" } | { kind: "lines"; status: string; lines: [string, string][] } | { kind: "bytes"; bytes: Uint8Array };

const CONTRACT_HEADERS = ["Content-Type", "Idempotency-Key", "Correlation-Id", "Causation-Id", "traceparent", "tracestate"];
const headerName = () =>
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...CONTRACT_HEADERS) },
    { weight: 1, arbitrary: fc.constantFrom("content-type", "CONTENT-TYPE", "Nats-Msg-Id", "Nats-Request-Info", "Nats-Service-Error-Code", "Nerve-Instance", "X-Custom") },
    // keys nats.js refuses to parse: a space, a non-ASCII or control character
    { weight: 1, arbitrary: fc.constantFrom("Content Type", "bad key", "Ünïcode", "Idempotency-Key\u0000", "Causation\u0001Id", "😀", "") },
    { weight: 1, arbitrary: fc.string({ unit: fc.oneof(fc.constantFrom(...ID_CHARS), fc.constantFrom(...JUNK_CHARS, " ")), minLength: 1, maxLength: 20 }) },
  );
const headerValue = () =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom("application/json", "application/msgpack", "application/json; charset=utf-8", " APPLICATION/MSGPACK ", "application/json;\u0000", "text/plain", "", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") },
    { weight: 3, arbitrary: plainText(200) },
    { weight: 3, arbitrary: hostileText(200) },
    { weight: 1, arbitrary: fc.integer({ min: 129, max: 6000 }).map((n) => "k".repeat(n)) },
    { weight: 1, arbitrary: fc.constantFrom("a\r\nb", "x\nContent-Type: text/plain", "v\r\n\r\nbody") },
  );
const headerArb = (): fc.Arbitrary<HeaderSpec> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.constant({ kind: "none" as const }) },
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant("lines" as const),
        status: fc.oneof({ weight: 8, arbitrary: fc.constant("NATS/1.0") }, { weight: 1, arbitrary: fc.constantFrom("NATS/1.0 503", "NATS/1.0 200 OK", "", "HTTP/1.1 200", "NATS/2.0 x") }),
        lines: fc.array(fc.tuple(headerName(), headerValue()), { maxLength: 6 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("bytes" as const), bytes: fc.uint8Array({ maxLength: 300 }) }) },
  );

function headerBytes(h: HeaderSpec): Uint8Array | undefined {
  if (h.kind === "none") return undefined;
  if (h.kind === "bytes") return h.bytes;
  return headerBlock(h.lines.map(([k, v]) => `${k}: ${v}`), h.status);
}

/**
 * The reply's content type the contract promises, where the header block is well formed enough to
 * say: the request's (MessagePack by default), JSON when it is unsupported. Undefined: not predicted.
 */
function expectedReplyType(h: HeaderSpec): string | undefined {
  if (h.kind === "none") return ContentTypes.MsgPack;
  if (h.kind === "bytes" || h.status !== "NATS/1.0") return undefined;
  const printableKey = (k: string) => k.length > 0 && [...k].every((c) => c.charCodeAt(0) >= 33 && c.charCodeAt(0) <= 126 && c !== ":");
  if (h.lines.some(([k, v]) => !printableKey(k) || /[\r\n]/.test(v))) return undefined;
  // By its exact name, else the first name that matches ignoring case (wire.ts's headerValue).
  const ct = (h.lines.find(([k]) => k === "Content-Type") ?? h.lines.find(([k]) => k.toLowerCase() === "content-type"))?.[1];
  // Lone surrogates reach the wire as U+FFFD (UTF-8 cannot carry them). As wire.ts reads a value: an
  // all-ASCII header block through nats.js, which trims (ASCII) white space; any other exactly, trimmed
  // of spaces and tabs only (a value of " \u00A0" is U+00A0, not empty).
  const asciiBlock = h.lines.every(([k, v]) => /^[\x00-\x7f]*$/.test(k + v));
  const sent = ct === undefined ? undefined : Buffer.from(ct, "utf8").toString("utf8");
  const onWire = sent === undefined ? undefined : asciiBlock ? sent.trim() : sent.replace(/^[ \t]+|[ \t]+$/g, "");
  if (onWire !== undefined && !isText(onWire)) return ContentTypes.Json; // not text: refused, answered in JSON
  return contentTypeOf(onWire) ?? ContentTypes.Json;
}

// ---------------------------------------------------------------------------------------------
// What a reply must be

/** Decodes a reply by its Content-Type; fails the property when it is not one of the contract's encodings. */
function decodeReplyBody(r: RawReply): unknown {
  const ct = r.headers["Content-Type"];
  expect([ContentTypes.Json, ContentTypes.MsgPack], `reply Content-Type (headers ${JSON.stringify(r.headers)}, status ${r.status})`).toContain(ct);
  const d = ct === ContentTypes.Json ? decodeJson(r.data) : decodeMsgPack(r.data);
  if (!d.ok) throw new Error(`the reply does not decode as ${ct}: ${d.error.message}`);
  return d.value;
}

/**
 * Checks a reply against the contract: a success of the right shape, or a failure whose code is in the
 * catalogue, is not `internal`, and matches `Nats-Service-Error-Code`. Returns the decoded body.
 */
function checkReply(r: RawReply, named: ReturnType<typeof typeOf>): { ok: boolean; error?: { code: string; message: string } } & Record<string, unknown> {
  const body = decodeReplyBody(r) as { ok?: unknown; error?: { code: string; message: string } };
  if (body?.ok === false) {
    const parsed = ErrorReply.safeParse(body);
    expect(parsed.success, `not the contract's failure reply: ${JSON.stringify(body)}`).toBe(true);
    const code = body.error!.code as keyof typeof ErrorCatalogue;
    expect(code, `a client's mistake answered internal: ${body.error!.message}`).not.toBe("internal");
    expect(r.headers["Nats-Service-Error-Code"]).toBe(String(ErrorCatalogue[code].status));
    expect(r.headers["Nats-Service-Error"]).toBeTruthy();
    return body as never;
  }
  expect(body?.ok, `neither a success nor a failure: ${JSON.stringify(body)}`).toBe(true);
  expect(r.headers["Nats-Service-Error-Code"]).toBeUndefined();
  expect(named, "a success for a subject that names no command or query").toBeDefined();
  const schema = named!.kind === "cmd" ? CommandSuccess : querySuccess(QueryDefinitions[named!.type].result);
  const parsed = schema.safeParse(body);
  expect(parsed.success, `${named!.type} answered outside its contract: ${parsed.error?.message}; ${JSON.stringify(body).slice(0, 500)}`).toBe(true);
  return body as never;
}

const pgAvailable = await postgresAvailable();

// ---------------------------------------------------------------------------------------------
// The properties, once per database

interface Database {
  name: string;
  available: boolean;
  /** Creates the database and returns Nerve's environment for it. */
  create(): Promise<Record<string, string>>;
  drop(): Promise<void>;
}

let pg: TempPostgres | undefined;
const databases: Database[] = [
  { name: "SQLite", available: true, create: async () => ({}), drop: async () => undefined },
  {
    name: "PostgreSQL",
    available: pgAvailable,
    create: async () => ({ NERVE_DB: (pg = await tempPostgres()).url }),
    drop: async () => void (await pg?.drop()),
  },
];

for (const database of databases) {
  describe.skipIf(!database.available)(`the NATS API on ${database.name}, fed anything a client can send`, () => {
    let t: TestNerve;
    let log: CapturedLog;
    let raw: RawNats;
    let fresh = 0;
    /** A fresh, valid aggregate id for a context (access ids are derived, as the contract says). */
    const freshId = (context: Context, prefix: string): string =>
      context === "access" ? deriveAccessId(`${prefix}-u${++fresh}`, `${prefix}-c${fresh}`) : `${prefix}-${++fresh}-${randomBytes(3).toString("hex")}`;

    beforeAll(async () => {
      log = captureLog("warn");
      t = await startTestNerve(await database.create(), { logger: log.logger });
      raw = await RawNats.connect(t.nats.port);
    });
    afterAll(async () => {
      raw?.close();
      await t?.close();
      await database.drop();
    });

    /** Sends a request; should the NATS server drop the raw connection (a request line it cannot parse), the property fails saying so. */
    async function send(subject: string, header: Uint8Array | undefined, body: Uint8Array): Promise<RawReply | "timeout"> {
      const r = await raw.request(subject, header, body, 10_000);
      expect(raw.closed, `the NATS server closed the client connection: ${raw.errors.join("; ")}`).toBe(false);
      return r;
    }

    const REFUSED = 200;
    it(
      "a refused command stores nothing: no snapshot, no event, no outbox row, the aggregate still does not exist",
      async () => {
        // Nothing else writes meanwhile (this runs first, on an idle service), so the writer's and the relay's figures must not move.
        expect(await t.nerve.relay.flush(5000)).toBe(true);
        type Case =
          | { why: "spoiled body"; type: CommandType; body: Body; json: boolean }
          | { why: "not found"; type: CommandType; body: Body; json: boolean }
          | { why: "hostile header"; type: CommandType; body: Body; json: boolean; header: string; value: string }
          | { why: "oversized"; type: CommandType; body: Body; json: boolean; pad: number };
        const json = fc.boolean();
        const anyType = fc.constantFrom(...COMMAND_TYPES);
        const updating = fc.constantFrom(...COMMAND_TYPES.filter((c) => !CommandDefinitions[c].creates));
        const caseArb: fc.Arbitrary<Case> = fc.oneof(
          anyType.chain((type) =>
            fc.record({ why: fc.constant("spoiled body" as const), type: fc.constant(type), body: fc.tuple(validBodyFor("cmd", type), spoilArb()).map(([v, s]) => spoil(v, s)), json }),
          ),
          updating.chain((type) => fc.record({ why: fc.constant("not found" as const), type: fc.constant(type), body: validBodyFor("cmd", type), json })),
          anyType.chain((type) =>
            fc.record({
              why: fc.constant("hostile header" as const),
              type: fc.constant(type),
              body: validBodyFor("cmd", type),
              json,
              header: fc.constantFrom("Idempotency-Key", "Correlation-Id", "Causation-Id", "traceparent", "tracestate", "Content-Type"),
              // NUL anywhere (lone surrogates cannot cross the wire: UTF-8 has no form for them) ...
              value: fc.tuple(plainText(100), fc.nat()).map(([s, at]) => insertAt(s, "\u0000", at)),
            }),
          ),
          anyType.chain((type) =>
            fc.record({
              why: fc.constant("hostile header" as const),
              type: fc.constant(type),
              body: validBodyFor("cmd", type),
              json,
              // ... or an id header over its 128 characters.
              header: fc.constantFrom("Idempotency-Key", "Correlation-Id", "Causation-Id"),
              value: fc.integer({ min: 129, max: 2000 }).map((n) => "k".repeat(n)),
            }),
          ),
          anyType.chain((type) => fc.record({ why: fc.constant("oversized" as const), type: fc.constant(type), body: validBodyFor("cmd", type), json, pad: fc.integer({ min: 64 * 1024, max: 150 * 1024 }) })),
        );

        await fc.assert(
          fc.asyncProperty(caseArb, async (c) => {
            const context = CommandDefinitions[c.type].context as Context;
            const aggId = freshId(context, "rf");
            let headerValue: string = c.json ? ContentTypes.Json : ContentTypes.MsgPack;
            const lines: string[] = [];
            if (c.why === "hostile header") {
              if (c.header === "Content-Type") headerValue = `${headerValue};${c.value.replace(/[\r\n]/g, "")}`;
              else if (c.value.length > 128) lines.push(`${c.header}: ${c.value}`);
              // A NUL in the middle, so that no side's trimming can take it away.
              else lines.push(`${c.header}: x${c.value.replace(/[\r\n]/g, "")}\u0000y`);
            }
            const headerBytesOut = headerBlock([`Content-Type: ${headerValue}`, ...lines]);
            const body = c.why === "oversized" ? { ...c.body, pad: "x".repeat(c.pad) } : c.body;
            const before = { writes: t.nerve.writer.stats.writes, published: t.nerve.relay.stats.published };
            const r = await send(`cmd.${context}.${c.type}.${aggId}`, headerBytesOut, encodeBody(body, c.json));
            expect(r).not.toBe("timeout");
            const reply = checkReply(r as RawReply, { kind: "cmd", type: c.type });
            expect(reply.ok, `expected a refusal, got ${JSON.stringify(reply)}`).toBe(false);
            if (c.why !== "not found") expect(reply.error!.code).toBe("invalid_request");
            expect(t.nerve.writer.stats.writes, "the writer committed something").toBe(before.writes);
            expect(t.nerve.relay.stats.published, "the relay published something").toBe(before.published);
            expect(t.nerve.relay.backlog, "the outbox holds something").toBe(0);
            const [view, key] = AGGREGATE_QUERIES[context];
            const got = await query(t.client, context, view, { [key]: aggId });
            expect(got.body).toMatchObject({ ok: false, error: { code: "not_found" } });
            const history = await query(t.client, "audit", "History", { aggregate_type: Contexts[context].aggregate, aggregate_id: aggId });
            expect(history.body).toEqual({ ok: true, result: { events: [] } });
          }),
          params(REFUSED, HEAVY),
        );
        expect(t.nerve.writer.stats.writes).toBe(0);
      },
      timeoutFor(REFUSED, 30, HEAVY),
    );

    const ANY = 400;
    it(
      "answers every request under cmd.>, query.> and pcmd.> with a contract reply, never internal, the error code in the headers",
      async () => {
        const requestArb = subjectArb().chain((subject) => fc.record({ subject: fc.constant(subject), header: headerArb(), body: bodyArb(subject) }));
        await fc.assert(
          fc.asyncProperty(requestArb, async (req) => {
            const r = await send(req.subject, headerBytes(req.header), bodyBytes(req.body));
            expect(r, "no reply within 10 s").not.toBe("timeout");
            const reply = r as RawReply;
            if (!served(req.subject, t.nerve.api!.partitions())) {
              // Nothing subscribes there: the server's own "no responders".
              expect([reply.status, reply.data.length]).toEqual([503, 0]);
              return;
            }
            expect(reply.status === 503 && reply.data.length === 0, "no responder for a served subject").toBe(false);
            checkReply(reply, typeOf(req.subject));
            const ct = expectedReplyType(req.header);
            if (ct !== undefined) expect(reply.headers["Content-Type"], "the reply's encoding is not the request's").toBe(ct);
          }),
          params(ANY, 0.5),
        );
      },
      timeoutFor(ANY, 20, 0.5),
    );

    const TEXT = 80;
    it(
      "stores valid text exactly: what a command carries comes back the same from queries, History and after a restart",
      async () => {
        const user = freshId("users", "rt");
        const policy = freshId("policies", "rt");
        for (const r of [
          await command(t.client, "users", "RegisterUser", user, { email: `${user}@example.com`, name: "Round Trip" }),
          await command(t.client, "policies", "CreatePolicy", policy, { name: "Standard", type: "standard", refund_period_days: 30 }),
        ]) expect(r.body.ok).toBe(true);

        /** What must come back: a query, what to take from its result, the value. */
        type Check = { what: string; context: string; query: string; body: Body; pick: (result: any) => unknown; expected: unknown };
        const field = (context: string, q: string, body: Body, path: Path, expected: unknown): Check => ({
          what: `${q} ${JSON.stringify(body)} at ${path.join(".")}`,
          context,
          query: q,
          body,
          pick: (r) => getAt(r, path),
          expected,
        });
        /** A payload field of the aggregate's last event of a type, as History reads it from the event log. */
        const eventField = (aggregate: string, aggId: string, eventType: string, path: Path, expected: unknown): Check => ({
          what: `History of ${aggregate} ${aggId}: last ${eventType} at ${path.join(".")}`,
          context: "audit",
          query: "History",
          body: { aggregate_type: aggregate, aggregate_id: aggId },
          pick: (r) => getAt(r.events.findLast((e: { event_type: string }) => e.event_type === eventType), path),
          expected,
        });
        /** Checks kept for after the restart: each holds until the end. */
        const checks: Check[] = [];
        const check = async (c: Check) => {
          const r = await query(t.client, c.context, c.query, c.body);
          expect(r.body.ok, JSON.stringify(r.body)).toBe(true);
          expect(c.pick(r.body.result), c.what).toStrictEqual(c.expected);
        };
        /** Checks now and again after the restart. */
        const expectAll = async (...cs: Check[]) => {
          for (const c of cs) await check(c);
          checks.push(...cs);
        };
        const expectCommand = async (context: Context, type: CommandType, aggId: string, body: Body, headers: Record<string, string> = {}) => {
          const r = await command(t.client, context, type, aggId, body, { headers });
          expect(r.body, `${type} ${JSON.stringify(body)}`).toMatchObject({ ok: true });
        };

        type Scenario =
          | { kind: "user name"; name: string }
          | { kind: "profile"; display_name: string; bio: string }
          | { kind: "policy name"; name: string }
          | { kind: "course"; title: string; description: string; newTitle: string; newDescription: string }
          | { kind: "order"; payment: string; reason: string }
          | { kind: "access"; reason: string }
          | { kind: "causal headers"; correlation: string; causation: string }
          | { kind: "long ids"; char: string };
        // Text at its limit, counted as the schemas count: in code points (so twice as many UTF-16 units when astral).
        const text = (max: number, blankOk = false) =>
          fc.oneof(
            { weight: 9, arbitrary: blankOk ? plainText(max) : contractText(max) },
            { weight: 1, arbitrary: fc.constantFrom("😀", "𐀀", "👍🏽", "e\u0301", "字").map((c) => c.repeat(Math.floor(max / [...c].length))) },
          );
        const scenario: fc.Arbitrary<Scenario> = fc.oneof(
          fc.record({ kind: fc.constant("user name" as const), name: text(200) }),
          fc.record({ kind: fc.constant("profile" as const), display_name: text(100), bio: text(2000, true) }),
          fc.record({ kind: fc.constant("policy name" as const), name: text(200) }),
          fc.record({ kind: fc.constant("course" as const), title: text(200), description: text(10_000, true), newTitle: text(200), newDescription: text(10_000, true) }),
          fc.record({ kind: fc.constant("order" as const), payment: text(128), reason: text(500) }),
          fc.record({ kind: fc.constant("access" as const), reason: text(500) }),
          fc.record({ kind: fc.constant("causal headers" as const), correlation: traceId(), causation: traceId() }),
          fc.record({ kind: fc.constant("long ids" as const), char: fc.constantFrom("😀", "𐀀", "字", "k") }),
        );

        await fc.assert(
          fc.asyncProperty(scenario, async (s) => {
            switch (s.kind) {
              case "user name": {
                const u = freshId("users", "rt");
                await expectCommand("users", "RegisterUser", u, { email: `${u}@example.com`, name: s.name });
                await expectAll(field("users", "GetUser", { user_id: u }, ["name"], s.name), eventField("User", u, "UserRegistered", ["payload", "name"], s.name));
                break;
              }
              case "profile": {
                const u = freshId("users", "rt");
                await expectCommand("users", "RegisterUser", u, { email: `${u}@example.com`, name: "P" });
                await expectCommand("users", "UpdateUserProfile", u, { profile_data: { display_name: s.display_name, bio: s.bio } });
                await expectAll(
                  field("users", "GetUser", { user_id: u }, ["profile_data", "display_name"], s.display_name),
                  field("users", "GetUser", { user_id: u }, ["profile_data", "bio"], s.bio),
                  eventField("User", u, "UserProfileUpdated", ["payload", "profile_data"], { display_name: s.display_name, bio: s.bio }),
                );
                break;
              }
              case "policy name": {
                const p = freshId("policies", "rt");
                await expectCommand("policies", "CreatePolicy", p, { name: s.name, type: "no_refund", refund_period_days: 0 });
                await expectAll(field("policies", "GetPolicy", { policy_id: p }, ["name"], s.name), eventField("RefundPolicy", p, "PolicyCreated", ["payload", "name"], s.name));
                break;
              }
              case "course": {
                const c = freshId("courses", "rt");
                await expectCommand("courses", "CreateCourse", c, { title: s.title, instructor_id: user, policy_id: policy, description: s.description });
                await check(field("courses", "GetCourse", { course_id: c }, ["title"], s.title));
                await check(field("courses", "GetCourse", { course_id: c }, ["description"], s.description));
                await check(eventField("Course", c, "CourseCreated", ["payload", "title"], s.title));
                await expectCommand("courses", "UpdateCourse", c, { title: s.newTitle, description: s.newDescription });
                await expectAll(
                  field("courses", "GetCourse", { course_id: c }, ["title"], s.newTitle),
                  field("courses", "GetCourse", { course_id: c }, ["description"], s.newDescription),
                  eventField("Course", c, "CourseUpdated", ["payload", "title"], s.newTitle),
                  eventField("Course", c, "CourseUpdated", ["payload", "description"], s.newDescription),
                );
                break;
              }
              case "order": {
                const c = freshId("courses", "rt");
                const o = freshId("orders", "rt");
                await expectCommand("courses", "CreateCourse", c, { title: "For sale", instructor_id: user, policy_id: policy, price: { amount: 100, currency: "EUR" } });
                await expectCommand("orders", "PlaceOrder", o, { user_id: user, course_ids: [c] });
                await expectCommand("orders", "MarkOrderPaid", o, { payment_id: s.payment });
                await expectAll(field("orders", "GetOrder", { order_id: o }, ["payment_id"], s.payment), eventField("Order", o, "OrderPaid", ["payload", "payment_id"], s.payment));
                await expectCommand("orders", "RefundOrder", o, { refund_reason: s.reason });
                await expectAll(eventField("Order", o, "OrderRefunded", ["payload", "refund_reason"], s.reason));
                break;
              }
              case "access": {
                const u = `rt-learner-${++fresh}`;
                const a = deriveAccessId(u, "rt-course");
                await expectCommand("access", "GrantCourseAccess", a, { user_id: u, course_id: "rt-course" });
                await expectCommand("access", "RevokeCourseAccess", a, { reason: s.reason });
                await expectAll(eventField("AccessRecord", a, "AccessRevoked", ["payload", "reason"], s.reason));
                break;
              }
              case "causal headers": {
                // Header values cross the wire as `Key: value` lines, which every NATS client trims and
                // which cannot hold CR or LF: what is stored is the trimmed value, exactly.
                const correlation = s.correlation.replace(/[\r\n]/g, "-");
                const causation = s.causation.replace(/[\r\n]/g, "-");
                const u = freshId("users", "rt");
                await expectCommand("users", "RegisterUser", u, { email: `${u}@example.com`, name: "C" }, { "Correlation-Id": correlation, "Causation-Id": causation });
                if (correlation.trim() !== "") await expectAll(eventField("User", u, "UserRegistered", ["correlation_id"], correlation.trim()));
                if (causation.trim() !== "") await expectAll(eventField("User", u, "UserRegistered", ["causation_id"], causation.trim()));
                break;
              }
              case "long ids": {
                // 128 characters, as the contract counts them (code points): astral ones are 256 UTF-16 units.
                const v = s.char.repeat(128);
                const u = freshId("users", "rt");
                const headers = { "Idempotency-Key": v, "Correlation-Id": v, "Causation-Id": v };
                const first = await command(t.client, "users", "RegisterUser", u, { email: `${u}@example.com`, name: "L" }, { headers });
                expect(first.body, JSON.stringify(first.body)).toMatchObject({ ok: true });
                const again = await command(t.client, "users", "RegisterUser", u, { email: `${u}@example.com`, name: "L" }, { headers });
                expect(again.body).toEqual(first.body);
                await expectAll(eventField("User", u, "UserRegistered", ["correlation_id"], v), eventField("User", u, "UserRegistered", ["causation_id"], v));
                break;
              }
            }
          }),
          params(TEXT, HEAVY),
        );

        // The snapshots themselves: a restarted Nerve reads every aggregate back from the database.
        await t.stopNerve();
        await t.restartNerve();
        for (const c of checks.slice(-500)) await check(c);
      },
      timeoutFor(TEXT, 200, HEAVY),
    );

    const SEARCH = 300;
    it(
      "answers SearchCatalog for any text: items for valid text, invalid_request for hostile, blank or too long text, never internal",
      async () => {
        // Something to find, with the characters FTS5 and LIKE treat as syntax.
        const words = ['"quoted"', "star*", "NEAR", "col:on", "per%cent", "under_score", "back\\slash", "caf\u00e9", "😀"];
        const policy = freshId("policies", "search");
        expect((await command(t.client, "policies", "CreatePolicy", policy, { name: "S", type: "standard", refund_period_days: 1 })).body.ok).toBe(true);
        for (const [i, w] of words.entries()) {
          const r = await command(t.client, "courses", "CreateCourse", `search-${i}`, { title: `Course ${w}`, instructor_id: "i", policy_id: policy, description: `about ${w}` });
          expect(r.body.ok).toBe(true);
        }
        const text = fc.oneof(
          { weight: 4, arbitrary: contractText(200) },
          { weight: 2, arbitrary: plainText(260) },
          { weight: 1, arbitrary: fc.tuple(fc.constantFrom("😀", "𐀀", "é", "a"), fc.integer({ min: 195, max: 205 })).map(([c, n]) => c.repeat(n)) },
          { weight: 2, arbitrary: fc.constantFrom(...words, ...words.map((w) => ` ${w.slice(0, 3)} `), "*", '"', "NEAR(a b)", "a OR b", "-x", "^", "\\", "%", "_", "''", "?", "$1", "\u200b") },
          { weight: 3, arbitrary: hostileText(200) },
        );
        const limit = fc.oneof(fc.constant(undefined), fc.integer({ min: 1, max: 100 }), fc.constantFrom(0, 101, -1, 1.5, "5", null));
        await fc.assert(
          fc.asyncProperty(text, limit, fc.boolean(), async (text, limit, json) => {
            const body = limit === undefined ? { text } : { text, limit };
            const r = await send("query.courses.SearchCatalog", headerBlock([`Content-Type: ${json ? ContentTypes.Json : ContentTypes.MsgPack}`]), encodeBody(body, json));
            expect(r).not.toBe("timeout");
            const reply = checkReply(r as RawReply, { kind: "query", type: "SearchCatalog" });
            // zod measures strings in code points (an astral character is one, not two UTF-16 units).
            const length = [...text.trim()].length;
            const valid = isText(text) && !isBlank(text) && length >= 1 && length <= 200 && (limit === undefined || (Number.isInteger(limit) && (limit as number) >= 1 && (limit as number) <= 100));
            if (valid) expect(reply.ok, JSON.stringify(reply)).toBe(true);
            else expect(reply.error?.code, JSON.stringify(reply)).toBe("invalid_request");
          }),
          params(SEARCH, 1 / 3),
        );
      },
      timeoutFor(SEARCH, 20, 1 / 3),
    );

    it("is alive afterwards, and logged no error for any of these client mistakes", async () => {
      const u = freshId("users", "alive");
      expect((await command(t.client, "users", "RegisterUser", u, { email: `${u}@example.com`, name: "Still here" })).body.ok).toBe(true);
      expect((await query(t.client, "users", "GetUser", { user_id: u })).body.result.name).toBe("Still here");
      expect(t.nerve.api!.stats.failed.internal ?? 0).toBe(0);
      const errors = log.errors();
      expect(errors, errors.map((e) => `${e.msg}: ${e.err?.message ?? ""}`).join("\n")).toEqual([]);
    });
  });
}
