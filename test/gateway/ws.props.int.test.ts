/**
 * Property tests of the WebSocket gateway (issue #10): whatever a client sends — any text or binary
 * frame, any query string on the upgrade, any HTTP request to any route — the gateway answers within
 * the contract and keeps serving. Every client frame gets an `ack` (a success, or a contract error
 * code that is never `internal`) and the socket stays open; HTTP answers 2xx or 4xx, never 5xx; the
 * process never ends and logs no error; a fresh socket works at the end.
 *
 * Two client mistakes close a socket, by the WebSocket protocol rather than the contract, and have
 * their own examples below: a text frame that is not UTF-8 (RFC 6455 §8.1 requires failing the
 * connection) and a frame over uWS's 1 MiB `maxPayloadLength`.
 *
 * Run counts: in CI 300 frames, 100 upgrades, 300 HTTP requests (about 5 s in all). `npm run fuzz`
 * (`FUZZ_RUNS=20000`) runs FUZZ_RUNS frames, 5,000 upgrades and 15,000 HTTP requests: the standard
 * scaling times 2/3 and 1/2 (each case opens a connection, the frames run commands) — see {@link params}.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createConnection } from "node:net";
import WebSocket from "ws";
import { AckFrame, ClientFrame, ErrorCatalogue, PlainText, ServerFrame } from "../../contracts/index.js";
import { captureLog, command, query, startTestNerve, type CapturedLog, type TestNerve } from "../support/index.js";
import { contractText, hostileChar, hostileText, id, insertAt, plainText } from "../support/arbitraries.js";
import { fuzzParams, fuzzSummary, fuzzing, runs } from "../support/fuzz.js";
import { TestClient, grant, startTestGateway, token, type Frame, type TestGateway } from "./support.js";

fuzzSummary(import.meta.url);

/** fast-check parameters: `ciRuns` in CI; when fuzzing, the standard scaling times `fuzzShare`. */
function params<T>(ciRuns: number, fuzzShare = 1): fc.Parameters<T> {
  const p = fuzzParams<T>(ciRuns);
  return fuzzing ? { ...p, numRuns: Math.max(ciRuns, Math.round(runs(ciRuns) * fuzzShare)) } : p;
}
const timeoutFor = (ciRuns: number, msPerCase: number, fuzzShare = 1) => 60_000 + (fuzzing ? Math.round(runs(ciRuns) * fuzzShare) : ciRuns) * msPerCase;

const USER = "ws-fuzzer";
/** Courses the user has access to (UpdateProgress succeeds); any other course is not_found. */
const GRANTED = ["c1", "c2"];
const MAX_FRAME_BYTES = 8 * 1024;

let t: TestNerve;
let gw: TestGateway;
let nerveLog: CapturedLog;
let gatewayLog: CapturedLog;

beforeAll(async () => {
  nerveLog = captureLog("warn");
  gatewayLog = captureLog("warn");
  t = await startTestNerve({}, { logger: nerveLog.logger });
  gw = await startTestGateway(t.nats.url, { devTokens: true, logger: gatewayLog.logger });
  for (const c of GRANTED) await grant(t.client, USER, c);
});
afterAll(async () => {
  await gw?.close();
  await t?.close();
});

// ---------------------------------------------------------------------------------------------
// Frames

/** A frame as the client sends it. */
type FrameSpec = { kind: "text"; text: string } | { kind: "binary"; bytes: Uint8Array };

const updateProgress = () =>
  fc.record({
    type: fc.constant("UpdateProgress"),
    // Up to 128 characters as the schemas count them (code points: 256 UTF-16 units when astral).
    request_id: fc.oneof(contractText(128), plainText(128, 1), fc.constantFrom("😀", "𐀀", "é").map((c) => c.repeat(128))),
    course_id: fc.oneof(fc.constantFrom(...GRANTED), id()),
    progress: fc.integer({ min: 0, max: 100 }),
  });

/** An UpdateProgress frame with one thing wrong (or, now and then, nothing). */
const spoiledUpdate = () =>
  fc
    .tuple(
      updateProgress(),
      fc.constantFrom("type", "request_id", "course_id", "progress"),
      fc.oneof(
        fc.record({ how: fc.constant("hostile" as const), char: hostileChar(), at: fc.nat() }),
        fc.record({ how: fc.constant("value" as const), value: fc.oneof(fc.anything({ maxDepth: 2 }), fc.constantFrom(-1, 101, 50.5, "50", "", "x".repeat(129), "UpdateProgress ", "updateprogress", "a.b", "*", ">")) }),
        fc.record({ how: fc.constant("missing" as const) }),
        fc.record({ how: fc.constant("extra" as const), key: fc.constantFrom("user_id", "__proto__", "constructor", "access_id", "aggregate_id", "") }),
      ),
    )
    .map(([frame, field, change]) => {
      const f: Record<string, unknown> = { ...frame };
      if (change.how === "hostile") f[field] = insertAt(String(f[field]), change.char, change.at);
      else if (change.how === "value") f[field] = change.value;
      else if (change.how === "missing") delete f[field];
      else Object.defineProperty(f, change.key, { value: "ada", enumerable: true, writable: true, configurable: true });
      return f;
    });

const frameArb = (): fc.Arbitrary<FrameSpec> =>
  fc.oneof(
    { weight: 3, arbitrary: updateProgress().map((f) => ({ kind: "text" as const, text: JSON.stringify(f) })) },
    { weight: 5, arbitrary: spoiledUpdate().map((f) => ({ kind: "text" as const, text: JSON.stringify(f) })) },
    { weight: 2, arbitrary: fc.oneof(fc.string({ unit: "binary", maxLength: 200 }), hostileText(200), fc.constantFrom("", "null", "[]", "{}", "1", '"x"', "{", '{"type":"UpdateProgress"')).map((text) => ({ kind: "text" as const, text })) },
    { weight: 2, arbitrary: fc.json({ maxDepth: 3 }).map((text) => ({ kind: "text" as const, text })) },
    { weight: 1, arbitrary: fc.tuple(updateProgress(), fc.integer({ min: MAX_FRAME_BYTES - 100, max: 100_000 })).map(([f, n]) => ({ kind: "text" as const, text: JSON.stringify({ ...f, pad: "p".repeat(n) }) })) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => ({ kind: "binary" as const, bytes })) },
  );

/** What the gateway must answer to a text frame, judged by the contract's ClientFrame (as the server reads it: UTF-8). */
function expectedAck(spec: FrameSpec): { requestId: string | null; valid: boolean; courseId?: string } {
  if (spec.kind === "binary") return { requestId: null, valid: false };
  // `ws` sends a JS string as UTF-8, where a lone surrogate becomes U+FFFD.
  const bytes = Buffer.from(spec.text, "utf8");
  if (bytes.length > MAX_FRAME_BYTES) return { requestId: null, valid: false };
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString("utf8"));
  } catch {
    return { requestId: null, valid: false };
  }
  const rid = (raw as { request_id?: unknown } | null)?.request_id;
  // Echoed only when it is contract text (no NUL, no lone surrogate from a JSON escape), up to 128 code points.
  const requestId = typeof rid === "string" && PlainText.max(128).safeParse(rid).success ? rid : null;
  const parsed = ClientFrame.safeParse(raw);
  return parsed.success ? { requestId, valid: true, courseId: parsed.data.course_id } : { requestId, valid: false };
}

/** A socket of {@link USER}, its welcome received. */
async function socket(): Promise<TestClient> {
  const c = await TestClient.ready(gw.port, USER);
  return c;
}

const acks = (c: TestClient): Frame[] => c.frames.filter((f) => f.type === "ack");

describe("the WebSocket gateway, fed anything a client can send", () => {
  const FRAMES = 300;
  it(
    "answers every client frame with an ack — a success or a contract error code, never internal — and keeps the socket open",
    async () => {
      const c = await socket();
      await fc.assert(
        fc.asyncProperty(frameArb(), async (spec) => {
          const before = acks(c).length;
          c.ws.send(spec.kind === "text" ? spec.text : Buffer.from(spec.bytes), { binary: spec.kind === "binary" });
          await c.until((x) => acks(x).length > before || x.closed !== undefined, 10_000, "an ack");
          expect(c.closed, "the gateway closed the socket").toBeUndefined();
          const ack = acks(c)[before]!;
          const parsed = AckFrame.safeParse(ack);
          expect(parsed.success, `not the contract's ack: ${JSON.stringify(ack)}`).toBe(true);
          const want = expectedAck(spec);
          expect(ack.request_id).toStrictEqual(want.requestId);
          if (!want.valid) {
            expect(ack, JSON.stringify(ack)).toMatchObject({ ok: false, error: { code: "invalid_request" } });
          } else if (GRANTED.includes(want.courseId!)) {
            expect(ack, JSON.stringify(ack)).toMatchObject({ ok: true });
          } else {
            expect(ack, JSON.stringify(ack)).toMatchObject({ ok: false, error: { code: "not_found" } });
          }
          if (ack.ok === false) expect(Object.keys(ErrorCatalogue)).toContain(ack.error.code);
        }),
        params(FRAMES, 2 / 3),
      );
      // Everything the socket got is a contract frame.
      for (const f of c.frames) expect(ServerFrame.safeParse(f).success, JSON.stringify(f)).toBe(true);
      await c.close();
    },
    timeoutFor(FRAMES, 30, 2 / 3),
  );

  // -------------------------------------------------------------------------------------------
  // The upgrade

  const UPGRADES = 100;
  let earlyCloses = 0;
  let opened = 0;
  it(
    "opens a socket for a valid token whatever else the query string holds, refuses any other with 401, and never fails",
    async () => {
      const valid = await token(USER);
      const junk = () =>
        fc.oneof(
          plainText(40),
          hostileText(40),
          fc.constantFrom("%00", "%", "%zz", "%ff%fe", "%C0%80", "%E2%80%AE", "..%2F..%2F", "s", "s0", "s-1", "sZZ", "s" + "z".repeat(12), "\u0000", "🙂"),
          fc.integer({ min: 1000, max: 6000 }).map((n) => "%41".repeat(Math.floor(n / 3))),
        );
      type Upgrade = { token: { kind: "valid" } | { kind: "valid+junk"; junk: string } | { kind: "junk"; junk: string } | { kind: "none" }; cursor?: string; bearer?: string; extra?: string; raw: boolean };
      const upgradeArb: fc.Arbitrary<Upgrade> = fc.record(
        {
          token: fc.oneof(
            fc.constant({ kind: "valid" as const }),
            fc.record({ kind: fc.constant("valid+junk" as const), junk: junk().filter((j) => j !== "") }),
            fc.record({ kind: fc.constant("junk" as const), junk: junk() }),
            fc.constant({ kind: "none" as const }),
          ),
          cursor: junk(),
          bearer: fc.oneof(fc.constant(valid), junk()),
          extra: junk(),
          // Put junk into the query string undecoded (percent signs and all) rather than percent-encoded.
          raw: fc.boolean(),
        },
        { requiredKeys: ["token", "raw"] },
      );
      // Percent-encoded UTF-8 (a lone surrogate as U+FFFD, what UTF-8 makes of it), or raw: as it is
      // where a request line can carry it (visible ASCII but `&`, `#`), percent signs and all.
      const put = (v: string, raw: boolean) =>
        Buffer.from(v, "utf8")
          .toString("latin1")
          .replace(raw ? /[^\x21-\x7e]|[&#]/g : /[^A-Za-z0-9\-_.~]/g, (ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, "0")}`);

      await fc.assert(
        fc.asyncProperty(upgradeArb, async (u) => {
          const q: string[] = [];
          if (u.token.kind === "valid") q.push(`token=${valid}`);
          else if (u.token.kind === "valid+junk") q.push(`token=${valid}${put(u.token.junk, u.raw)}`);
          else if (u.token.kind === "junk") q.push(`token=${put(u.token.junk, u.raw)}`);
          if (u.cursor !== undefined) q.push(`cursor=${put(u.cursor, u.raw)}`);
          if (u.extra !== undefined) q.push(`x${put(u.extra, u.raw)}=${put(u.extra, u.raw)}`);
          const headers: Record<string, string> = u.bearer !== undefined && /^[\x20-\x7e]*$/.test(u.bearer) ? { Authorization: `Bearer ${u.bearer}` } : {};
          const opens = u.token.kind === "valid" || (u.token.kind === "none" && u.bearer === valid) || (u.token.kind === "junk" && u.token.junk === "" && u.bearer === valid);
          // uWS decodes a raw query value leniently: a `%` that starts no escape may vanish, leaving the
          // valid token, or an empty one (then the Authorization header counts). Either answer is fine there.
          const either = u.raw && (u.token.kind === "valid+junk" || (u.token.kind === "junk" && u.bearer === valid));
          const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/v1/ws?${q.join("&")}`, { headers });
          const frames: Frame[] = [];
          ws.on("message", (d) => frames.push(JSON.parse(String(d))));
          const outcome = await new Promise<{ open: true } | { status: number } | { error: string }>((resolve) => {
            ws.once("open", () => resolve({ open: true }));
            ws.once("unexpected-response", (_req, res) => resolve({ status: res.statusCode ?? 0 }));
            ws.once("error", (err) => resolve({ error: err.message }));
          });
          try {
            if (either && "status" in outcome) expect(outcome.status).toBe(401);
            if (either && !("open" in outcome)) return;
            if (!opens && !either) {
              expect(outcome, `the upgrade of ?${q.join("&").slice(0, 300)}`).toEqual({ status: 401 });
              return;
            }
            expect(outcome, `the upgrade of ?${q.join("&").slice(0, 300)}`).toEqual({ open: true });
            // Live: it answers a frame. Whatever came first is a contract frame; a cursor it cannot use gets `reset` first.
            opened++;
            let closeCode: number | undefined;
            const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve((closeCode = code))));
            ws.send("ping?");
            const until = Date.now() + 10_000;
            while (!frames.some((f) => f.type === "ack") && Date.now() < until && closeCode === undefined) await Promise.race([new Promise((r) => setTimeout(r, 10)), closed]);
            // Known and open (stop 8's note): under load uWS now and then drops a fresh socket with 1006
            // before its first frame. It is counted and reported, not a failure of this property.
            if (closeCode === 1006 && frames.length === 0) {
              earlyCloses++;
              return;
            }
            expect(frames.some((f) => f.type === "ack"), `no ack; close ${closeCode}; frames ${JSON.stringify(frames).slice(0, 300)}`).toBe(true);
            for (const f of frames) expect(ServerFrame.safeParse(f).success, JSON.stringify(f)).toBe(true);
          } finally {
            ws.terminate();
          }
        }),
        params(UPGRADES, 0.5),
      );
      // A few early closes are the known issue; many would be a new bug.
      if (earlyCloses > 0) console.info(`[ws.props] ${earlyCloses} fresh socket(s) closed with 1006 before any frame (known uWS issue)`);
      expect(earlyCloses).toBeLessThanOrEqual(Math.max(2, Math.ceil(opened / 20)));
    },
    timeoutFor(UPGRADES, 100, 0.5),
  );

  // -------------------------------------------------------------------------------------------
  // HTTP

  const HTTP = 300;
  it(
    "answers every well-formed HTTP request to any route with 2xx or 4xx, correctly framed, and never a 5xx to anything",
    async () => {
      type HttpSpec = {
        method: string;
        path: string;
        query: string;
        headers: [string, string][];
        body: string;
        /** Bytes sent raw after the request line instead of a well-formed request. */
        garbage?: Uint8Array;
      };
      const segment = fc.oneof(
        fc.constantFrom("", "healthz", "readyz", "metrics", "dev", "token", "v1", "ws", "..", ".", "%2e%2e", "%2F", "%00", "etc", "passwd", "index.html", "~root", "%", "%zz", "😀", "\u0000"),
        fc.string({ maxLength: 12 }),
      );
      const pathArb = fc.oneof(
        fc.constantFrom("/", "/healthz", "/readyz", "/metrics", "/dev/token", "/v1/ws", "/v1/ws/", "//healthz", "/HEALTHZ", "/healthz/", "/healthz/..", "/../../../../etc/passwd", "/./metrics", "/%2e%2e/%2e%2e/etc/passwd", "/dev/token/../../metrics"),
        fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => `/${s.join("/")}`),
      );
      const queryArb = fc.oneof(
        fc.constant(""),
        fc.constantFrom("user_id=ada", "user_id=", "user_id=%00", "user_id=a.b", "user_id=ada&user_id=%00", "token=x", "a=1&a=2", "%zz", "&&&", "=", `user_id=${"u".repeat(65)}`),
        fc.array(fc.tuple(plainText(20), fc.oneof(plainText(40), hostileText(40))), { maxLength: 4 }).map((kv) => kv.map(([k, v]) => `${k}=${v}`).join("&")),
        fc.integer({ min: 1000, max: 3000 }).map((n) => `q=${"x".repeat(n)}`),
      );
      const headerArb = fc.array(
        fc.tuple(
          fc.oneof(
            fc.constantFrom("Accept", "Content-Type", "Authorization", "Cookie", "X-Forwarded-For", "Origin", "Range", "If-None-Match", "Accept-Encoding"),
            // Not the ones that frame the message or switch protocols: the test writes those itself.
            fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/).filter((k) => !/^(host|content-length|transfer-encoding|connection|upgrade|expect|te|trailer|keep-alive)$/i.test(k)),
          ),
          fc.oneof(plainText(60), hostileText(60), fc.constantFrom("*/*", "application/json", "Bearer x", "bytes=0-1", "gzip, br", "../../etc/passwd")),
        ),
        { maxLength: 5 },
      );
      const httpArb: fc.Arbitrary<HttpSpec> = fc.record(
        {
          method: fc.oneof(fc.constantFrom("GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"), fc.stringMatching(/^[A-Z]{1,10}$/)),
          path: pathArb,
          query: queryArb,
          headers: headerArb,
          body: fc.oneof(fc.constant(""), plainText(100), fc.integer({ min: 1000, max: 100_000 }).map((n) => "b".repeat(n))),
          garbage: fc.oneof({ weight: 11, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 200 }) }),
        },
        { requiredKeys: ["method", "path", "query", "headers", "body", "garbage"] },
      );
      // Targets are written percent-encoded (a request line holds visible ASCII only).
      const target = (s: HttpSpec) => {
        const enc = (v: string) => Buffer.from(v, "utf8").toString("latin1").replace(/[^\x21-\x7e]|[#]/g, (ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, "0")}`);
        return enc(s.path) + (s.query ? `?${enc(s.query)}` : "");
      };
      // What must get an answer: one of the nine standard methods (uWS's parser drops the connection on
      // any other, before the gateway sees the request), header values of visible ASCII (a control
      // character is malformed), headers within uWS's 4 KiB; no garbage.
      const STANDARD_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];
      const wellFormed = (s: HttpSpec) =>
        s.garbage === undefined &&
        STANDARD_METHODS.includes(s.method) &&
        s.headers.every(([, v]) => /^[\x20-\x7e]*$/.test(v)) &&
        s.headers.reduce((n, [k, v]) => n + k.length + v.length + 4, 0) < 3000;

      await fc.assert(
        fc.asyncProperty(httpArb, async (s) => {
          const head = `${s.method} ${target(s)} HTTP/1.1\r\nHost: 127.0.0.1\r\n${s.headers.map(([k, v]) => `${k}: ${v}\r\n`).join("")}`;
          const request = s.garbage
            ? Buffer.concat([Buffer.from(`${s.method} ${target(s)} HTTP/1.1\r\n`, "latin1"), s.garbage, Buffer.from("\r\n\r\n")])
            : Buffer.concat([Buffer.from(`${head}Content-Length: ${Buffer.byteLength(s.body)}\r\n\r\n`, "utf8"), Buffer.from(s.body, "utf8")]);
          // A malformed request may get no answer: the sending side is closed after it, so the server gives up at once.
          const res = await httpExchange(gw.port, request, wellFormed(s) ? 5000 : 300, s.method === "HEAD", !wellFormed(s));
          if (res.status !== undefined) expect(res.status, `${s.method} ${target(s).slice(0, 200)} → ${res.status}`).toBeLessThan(500);
          if (!wellFormed(s)) return;
          expect(res.status, `no answer to ${s.method} ${target(s).slice(0, 200)}: ${res.error ?? "nothing"}`).toBeDefined();
          expect(res.status).toBeGreaterThanOrEqual(200);
          expect(res.framing, `${s.method} ${target(s).slice(0, 200)}`).toBe("ok");
        }),
        params(HTTP, 0.5),
      );
      const health = await fetch(`http://127.0.0.1:${gw.port}/healthz`);
      expect(health.status).toBe(200);
    },
    timeoutFor(HTTP, 100, 0.5),
  );

  // -------------------------------------------------------------------------------------------
  // Protocol violations: the socket closes, the gateway goes on

  it("closes a socket whose text frame is not UTF-8 (RFC 6455 §8.1), and goes on serving", async () => {
    const c = await socket();
    c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    const closed = await c.closedWith();
    expect([1006, 1007]).toContain(closed.code);
    expect(acks(c)).toEqual([]);
    const next = await socket();
    next.send({ type: "UpdateProgress", request_id: "after-utf8", course_id: GRANTED[0], progress: 1 });
    expect(await next.ack("after-utf8")).toMatchObject({ ok: true });
    await next.close();
  });

  it("closes a socket that sends a frame over 1 MiB, and goes on serving", async () => {
    const c = await socket();
    c.send("x".repeat(1024 * 1024 + 1));
    const closed = await c.closedWith();
    expect([1006, 1009]).toContain(closed.code);
    const next = await socket();
    next.send({ type: "UpdateProgress", request_id: "after-big", course_id: GRANTED[0], progress: 1 });
    expect(await next.ack("after-big")).toMatchObject({ ok: true });
    await next.close();
  });

  it("serves a fresh socket at the end, and neither the gateway nor Nerve logged an error", async () => {
    await grant(t.client, USER, "c-last");
    const c = await socket();
    c.send({ type: "UpdateProgress", request_id: "last", course_id: "c-last", progress: 100 });
    expect(await c.ack("last")).toEqual({ type: "ack", request_id: "last", ok: true });
    await c.until((x) => x.events.some((f) => f.event.event_type === "CourseCompleted"), 10_000, "CourseCompleted");
    await c.close();
    expect((await fetch(`http://127.0.0.1:${gw.port}/readyz`)).status).toBe(200);
    expect((await query(t.client, "access", "GetLearnerProgress", { user_id: USER })).body.ok).toBe(true);
    expect((await command(t.client, "users", "RegisterUser", "ws-alive", { email: "ws-alive@example.com", name: "A" })).body.ok).toBe(true);
    for (const log of [gatewayLog, nerveLog]) {
      const errors = log.errors();
      expect(errors, errors.map((e) => `${e.msg}: ${e.err?.message ?? ""}`).join("\n")).toEqual([]);
    }
  });
});

/** What came back for a raw HTTP request. */
interface HttpOutcome {
  status?: number;
  /** "ok" when the response is one well-framed message (Content-Length honoured; no body after HEAD). */
  framing?: "ok" | string;
  error?: string;
}

/**
 * Writes `request` on a fresh connection and reads one response: the status line, the headers, and
 * the body by Content-Length, then a moment more for stray bytes (a body after HEAD); `waitMs` bounds
 * the wait (a malformed request may get no answer at all). `halfClose` ends the sending side after
 * the request, so that the server gives up on an incomplete one at once.
 */
function httpExchange(port: number, request: Buffer, waitMs: number, head: boolean, halfClose = false): Promise<HttpOutcome> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: "127.0.0.1", port });
    let buf = Buffer.alloc(0);
    let done = false;
    let judging = false;
    const split = () => {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const length = Number(lines.find((l) => /^content-length:/i.test(l))?.split(":")[1] ?? "0");
      return { lines, length, rest: buf.length - end - 4, expected: head ? 0 : length };
    };
    const judge = (): HttpOutcome => {
      const r = split();
      if (!r) return { error: buf.length > 0 ? `incomplete response: ${JSON.stringify(buf.toString("latin1").slice(0, 100))}` : "no answer" };
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(r.lines[0]!);
      if (!m) return { error: `not a status line: ${JSON.stringify(r.lines[0])}` };
      const framing = r.rest === r.expected ? "ok" : `${r.rest} bytes after the headers, ${r.expected} expected (Content-Length ${r.length}${head ? ", HEAD" : ""})`;
      return { status: Number(m[1]), framing };
    };
    const finish = (why?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const o = judge();
      resolve(o.status === undefined && why ? { error: `${o.error} (${why})` } : o);
    };
    const timer = setTimeout(() => finish("timeout"), waitMs);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      const r = split();
      if (!judging && r && r.rest >= r.expected) {
        judging = true;
        setTimeout(() => finish(), 5);
      }
    });
    sock.on("close", () => finish("closed"));
    sock.on("error", (err) => finish(err.message));
    if (halfClose) sock.end(request);
    else sock.write(request);
  });
}
