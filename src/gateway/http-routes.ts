/** The gateway's plain HTTP routes: `/healthz`, `/readyz`, `/metrics`, `/`, and the development `/dev/token`. */
import type { JetStreamManager } from "@nats-io/jetstream";
import { Gauge } from "prom-client";
import type { NatsConnection } from "@nats-io/nats-core";
import { ID_PATTERN, Streams } from "../../contracts/index.js";
import type { TokenVerifier } from "./auth.js";
import type { GatewayMetrics } from "./metrics.js";
import { progressPage } from "./page.js";
import type { HttpRequest, HttpResponse, TemplatedApp } from "./uws.js";

/** What the routes need. */
export interface HttpRouteDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  metrics: GatewayMetrics;
  tokens: TokenVerifier;
  devTokens: boolean;
  /** Whether the event log is warm (the start-up replay finished). */
  warm(): boolean;
  /** The start-up replay's progress (stream sequences read of those to read), where there is a replay. */
  replay?(): { read: number; of: number };
  /** Whether the start-up replay is still running (not warm yet, not stopping). */
  warming?(): boolean;
  /** Whether the NATS connection is up (not between a disconnect and its reconnect). */
  natsUp(): boolean;
  /** Whether the command and query API serves, where this process runs one (else absent). */
  apiServing?(): boolean;
}

/** Lifetime of development tokens (s). */
export const DEV_TOKEN_TTL_S = 3600;

/** An answer to an HTTP request. */
interface Reply {
  status: string;
  type: string;
  body: string;
  headers?: Record<string, string>;
}

const NOT_FOUND: Reply = { status: "404 Not Found", type: "text/plain", body: "not found" };

/** Registers the routes on the app. */
export function registerHttpRoutes(app: TemplatedApp, deps: HttpRouteDeps): void {
  const page = progressPage(deps.devTokens);
  let readiness: { at: number; result: Promise<Readiness> } | undefined;

  // Each route answers GET and HEAD (uWS routes them apart): HEAD gets GET's status and headers,
  // with its Content-Length and without its body — a body after a HEAD answer desynchronises the
  // client's connection. The HttpRequest is read before the handler returns, as uWS requires.
  const route = (pattern: string, handle: (req: HttpRequest) => Reply | Promise<Reply>) => {
    for (const head of [false, true]) {
      const register = head ? app.head.bind(app) : app.get.bind(app);
      register(pattern, (res, req) => {
        const reply = handle(req);
        if (reply instanceof Promise) respondLater(res, reply, head);
        else write(res, reply, head);
      });
    }
  };

  route("/healthz", () => ({ status: "200 OK", type: "text/plain", body: "ok" }));

  const readyNow = () => {
    if (!readiness || Date.now() - readiness.at > 1000) readiness = { at: Date.now(), result: checkReady(deps) };
    return readiness.result;
  };
  // /readyz as a figure, so that an alert can tell "up but not ready" from "down".
  new Gauge({
    name: "nerve_ready",
    help: "1 while /readyz answers 200 (NATS connected, the five streams reachable, the gateway warm, the API serving), else 0",
    registers: [deps.metrics.registry],
    async collect() {
      this.set((await readyNow()).ready ? 1 : 0);
    },
  });

  // Each of /readyz's checks apart, so that the not-ready alert can leave a start's warm-up to its own
  // slower rule without also ignoring NATS, a stream or the API while the warm-up lasts.
  new Gauge({
    name: "nerve_ready_check",
    help: "1 while a check of /readyz passes, by check: nats (connected), streams (all five reachable), api (serving, or not run here), warm (the gateway's start-up replay done)",
    labelNames: ["check"] as const,
    registers: [deps.metrics.registry],
    async collect() {
      const r = await readyNow();
      this.set({ check: "nats" }, r.nats ? 1 : 0);
      this.set({ check: "streams" }, Object.values(r.streams).every(Boolean) ? 1 : 0);
      this.set({ check: "api" }, r.api ? 1 : 0);
      this.set({ check: "warm" }, r.warm ? 1 : 0);
    },
  });

  // Not ready because still warming up after a start: what the not-ready alert leaves to its own slower rule.
  new Gauge({
    name: "nerve_gateway_warming",
    help: "1 while the gateway replays the last 24 h of EVENTS_ACCESS after its start (/readyz 503, warm: false), else 0",
    registers: [deps.metrics.registry],
    collect() {
      this.set(deps.warming?.() ? 1 : 0);
    },
  });

  route("/readyz", () =>
    readyNow().then((r) => ({ status: r.ready ? "200 OK" : "503 Service Unavailable", type: "application/json", body: JSON.stringify(r) })),
  );

  // Rendered at most once at a time and served again for a second (GatewayMetrics.render): the port is public.
  route("/metrics", () => deps.metrics.render().then((body) => ({ status: "200 OK", type: deps.metrics.registry.contentType, body })));

  route("/", () => ({ status: "200 OK", type: "text/html; charset=utf-8", body: page, headers: { "Cache-Control": "no-store" } }));

  route("/dev/token", (req) => {
    const userId = req.getQuery("user_id") ?? "";
    if (!deps.devTokens) return NOT_FOUND;
    if (!ID_PATTERN.test(userId)) return { status: "400 Bad Request", type: "text/plain", body: "user_id must match ^[A-Za-z0-9_-]{1,64}$" };
    return deps.tokens.sign(userId, DEV_TOKEN_TTL_S).then((token) => ({ status: "200 OK", type: "application/json", body: JSON.stringify({ user_id: userId, token, expires_in: DEV_TOKEN_TTL_S }) }));
  });

  app.any("/*", (res, req) => write(res, NOT_FOUND, req.getMethod() === "head"));
}

// Writes a reply; for HEAD, the headers only, with the Content-Length the body would have. (Not
// `endWithoutBody(length)`: this uWS then waits for that many body bytes, so the response never
// ends, and a handler that returns with its response unended makes uWS terminate the process.)
function write(res: HttpResponse, r: Reply, head: boolean): void {
  res.writeStatus(r.status).writeHeader("Content-Type", r.type);
  for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
  if (head) res.writeHeader("Content-Length", String(Buffer.byteLength(r.body))).endWithoutBody();
  else res.end(r.body);
}

/** The readiness report. */
export interface Readiness {
  ready: boolean;
  nats: boolean;
  streams: Record<string, boolean>;
  warm: boolean;
  /** While not warm: how far the start-up replay has got. */
  replay?: { read: number; of: number };
  /** Whether the command and query API serves (true where this process runs none). */
  api: boolean;
}

async function checkReady(deps: HttpRouteDeps): Promise<Readiness> {
  const nats = deps.natsUp() && !deps.nc.isClosed() && !deps.nc.isDraining();
  const streams: Record<string, boolean> = {};
  await Promise.all(
    Object.values(Streams).map(async (s) => {
      streams[s.name] = nats && (await deps.jsm.streams.info(s.name).then(() => true, () => false));
    }),
  );
  const warm = deps.warm();
  const replay = warm ? undefined : deps.replay?.();
  const api = deps.apiServing?.() ?? true;
  return { ready: nats && warm && api && Object.values(streams).every(Boolean), nats, streams, warm, ...(replay ? { replay } : {}), api };
}

// Answers once `reply` resolves, unless the client went away meanwhile.
function respondLater(res: HttpResponse, reply: Promise<Reply>, head: boolean): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  void reply
    .catch((err: unknown): Reply => ({ status: "500 Internal Server Error", type: "text/plain", body: String((err as Error).message) }))
    .then((r) =>
      // From a macrotask, like every uWS call made after an await (see the upgrade in gateway.ts).
      setImmediate(() => {
        if (aborted) return;
        res.cork(() => write(res, r, head));
      }),
    );
}
