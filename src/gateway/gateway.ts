/**
 * The WebSocket gateway of CONTRACT.md §6 on uWebSockets.js: learners connect to `/v1/ws` with a
 * JWT and see their access events pushed the moment they reach EVENTS_ACCESS; the same HTTP port
 * serves `/healthz`, `/readyz`, `/metrics` and the live-progress page at `/`.
 *
 * Auth happens before the upgrade (401 for a missing, malformed, badly signed or expired token), so
 * a refused client never holds a socket; a socket whose token expires later is closed with 4401. A
 * learner's sockets are capped (`maxSocketsPerUser`): each costs memory and a GetLearnerProgress, and
 * one token could otherwise open any number; the upgrade past the cap is refused with 429.
 * Heartbeats are uWS pings (`heartbeatSeconds` idle timeout): a client that answers neither data
 * nor pings is closed by uWS.
 *
 * The port listens before the start-up replay of EVENTS_ACCESS, which can take minutes on a busy
 * platform: meanwhile `/healthz` and `/metrics` answer, `/readyz` says 503 (`warm: false`, with the
 * replay's progress) and upgrades are refused with 503, so the instance is up but not ready.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "../log/index.js";
import { AccessFeed } from "./access-feed.js";
import { AuthError, TokenVerifier, tokenOf } from "./auth.js";
import { ClientCommands } from "./client-commands.js";
import { EventLog, type RetentionOptions } from "./event-log.js";
import { registerHttpRoutes } from "./http-routes.js";
import { Hub, type Conn } from "./hub.js";
import { openJwks } from "./jwks.js";
import { GatewayMetrics } from "./metrics.js";
import { ProgressQuery } from "./progress-query.js";
import { Sessions } from "./session.js";
import { assertNativeApp, loadUws, type HttpResponse, type us_listen_socket } from "./uws.js";
import { defaultSocketBudget } from "./socket-budget.js";
import { supervise } from "../supervision/index.js";
import { trackConnectivity } from "../nats/connectivity.js";

/** uWS's listen option that leaves SO_REUSEPORT off (`ListenOptions.LIBUS_LISTEN_EXCLUSIVE_PORT`). */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;
/** `listen(host, port, options, cb)`: the native addon takes it, the published typings omit it. */
type ListenWithHost = (host: string, port: number, options: number, cb: (s: us_listen_socket | false) => void) => unknown;

/** Everything the gateway needs; `nc`, `port`, `logger` and one of `jwtSecret` and `jwks` are required. */
export interface GatewayDeps {
  /** The NATS connection (shared with the service, or the gateway's own). */
  nc: NatsConnection;
  /** Whether this process's command and query API serves, for /readyz (absent: it runs none). */
  apiServing?: () => boolean;
  /** HTTP port; 0 picks a free one (see {@link Gateway.port}). */
  port: number;
  /** HS256 secret that verifies (and, in development, signs) tokens; without it HS256 tokens are refused. */
  jwtSecret?: string;
  /** An identity provider's JWKS (file path or https:// URL) for RS256, ES256 and EdDSA tokens. */
  jwks?: string;
  /** When set, tokens must carry this `iss`. */
  jwtIssuer?: string;
  /** When set, tokens must carry this `aud`. */
  jwtAudience?: string;
  /** Where the gateway logs (a child logger of the service's, say). */
  logger: Logger;
  /** Interface to listen on; all interfaces when omitted. */
  host?: string;
  /** Serves `/dev/token?user_id=…` and the page's sign-in; never in production. */
  devTokens?: boolean;
  /** Frames for one socket are coalesced within this window (ms, default 2; 0 = next tick). */
  flushMs?: number;
  /**
   * Bytes uWS may buffer for one socket (default 256 KiB): past them the gateway writes nothing more to
   * it until it drains. Also the most bytes of replies (acks) it keeps unwritten for a socket, before
   * its welcome or while it does not read, past which the socket is closed with 4408.
   */
  maxBufferedBytes?: number;
  /** How long (ms) a socket may stay behind (over `maxBufferedBytes`, not caught up since) before it is closed with 4408 as too slow (default 10 s). */
  slowAfterMs?: number;
  /** Idle seconds before uWS pings, and closes a client that stays silent (default 32, minimum 8). */
  heartbeatSeconds?: number;
  /** How far back the start-up replay of EVENTS_ACCESS reaches (ms, default 24 h). */
  replayMs?: number;
  /** What the resume buffers keep (default: 24 h or 1,000 events per learner, 250,000 in all). */
  retention?: Partial<RetentionOptions>;
  /** Wait for GetLearnerProgress before welcoming from the stream alone (ms, default 1,500). */
  queryTimeoutMs?: number;
  /** Wait for the command path (ms, default 5,000). */
  commandTimeoutMs?: number;
  /** Commands one socket may have in flight (default 16). */
  maxInflightCommands?: number;
  /** Largest client frame handled (bytes, default 8 KiB; larger ones get an error ack, over 1 MiB uWS closes with 1009). */
  maxFrameBytes?: number;
  /** Sockets one learner (a token's `sub`) may have open at once (default 16); an upgrade past them is refused with 429. */
  maxSocketsPerUser?: number;
  /**
   * Sockets this gateway may have open at once, over all learners (default: the process's descriptor limit
   * less a reserve, socket-budget.ts); an upgrade past them is refused with 503 and Retry-After.
   */
  maxSockets?: number;
  /**
   * Serves learners' WebSockets (`/v1/ws`) and reads EVENTS_ACCESS for them (default true). False
   * leaves only health, readiness, metrics and the page: a process without the `gateway` role.
   */
  websocket?: boolean;
}

/** A running gateway. */
export interface Gateway {
  /** The port actually listened on. */
  readonly port: number;
  /** Its Prometheus metrics (also served at `/metrics`). */
  readonly metrics: GatewayMetrics;
  /** The buffered history (for inspection and tests). */
  readonly log: EventLog<Conn>;
  /**
   * Resolves once the start-up replay is done and WebSockets are served (at once without the
   * `gateway` role), or once the gateway is stopped before that. Never rejects: a failed replay is
   * logged and tried again.
   */
  readonly warmedUp: Promise<void>;
  /** Open WebSockets. */
  connections(): number;
  /** Stops listening, closes every socket with 1001 (clients resume elsewhere), stops reading. */
  stop(): Promise<void>;
}

const DAY_MS = 24 * 3600_000;

/**
 * Starts the gateway; resolves once the port is listening, with the start-up replay running in the
 * background (see {@link Gateway.warmedUp}).
 */
export async function startGateway(deps: GatewayDeps): Promise<Gateway> {
  const uws = loadUws();
  const { nc, logger } = deps;
  // First: a bad JWKS file stops the start before anything else is running.
  const tokens = new TokenVerifier({
    secret: deps.jwtSecret,
    jwks: deps.jwks ? await openJwks(deps.jwks, { logger }) : undefined,
    issuer: deps.jwtIssuer,
    audience: deps.jwtAudience,
  });
  const metrics = new GatewayMetrics();
  const log = new EventLog<Conn>({ minAgeMs: DAY_MS, minEvents: 1000, maxEvents: 250_000, ...deps.retention });
  const maxBufferedBytes = deps.maxBufferedBytes ?? 256 * 1024;
  const hub = new Hub(log, metrics, { flushMs: deps.flushMs ?? 2, maxBufferedBytes, slowAfterMs: deps.slowAfterMs ?? 10_000 });
  // No API check here: during a stream leader's election it fails at once, and nothing below needs it yet.
  const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
  // Readiness follows the connection: down from a disconnect until the client has reconnected.
  const connectivity = trackConnectivity(nc, logger);
  const sessions = new Sessions(hub, log, new ProgressQuery(nc, logger, deps.queryTimeoutMs ?? 1500), jsm, logger);
  const commands = new ClientCommands(nc, hub, metrics, logger, {
    maxFrameBytes: deps.maxFrameBytes ?? 8 * 1024,
    maxInflight: deps.maxInflightCommands ?? 16,
    timeoutMs: deps.commandTimeoutMs ?? 5000,
  });
  const feed = new AccessFeed({ nc, log, logger, metrics, replayMs: deps.replayMs ?? DAY_MS, onEntry: (e) => hub.deliver(e) });
  const websocket = deps.websocket ?? true;
  const maxSocketsPerUser = deps.maxSocketsPerUser ?? 16;
  const maxSockets = deps.maxSockets ?? defaultSocketBudget();
  // Refused before the token's check too (cheap), and again once it passed (other upgrades may have opened meanwhile).
  const full = (res: HttpResponse): boolean => {
    if (hub.all.size < maxSockets) return false;
    metrics.closes.inc({ reason: "instance_full" });
    res.writeStatus("503 Service Unavailable").writeHeader("Retry-After", "5").end(`this gateway has its most sockets open (${maxSockets}); retry shortly, or another instance`);
    return true;
  };
  // Without the role there is nothing to replay; with it, not ready until the replay is done.
  let warm = !websocket;
  let stopping = false;

  const app = uws.App();
  // Always registered: uWS's native self-test (assertNativeApp) crashes an app without a WebSocket route.
  app.ws<Conn>("/v1/ws", {
    compression: uws.DISABLED,
    // Generous, so that oversized client frames still get an error ack; past it uWS closes with 1009.
    maxPayloadLength: 1024 * 1024,
    idleTimeout: Math.max(8, deps.heartbeatSeconds ?? 32),
    sendPingsAutomatically: true,
    // Far above the budget: uWS never drops a frame on its own, the hub closes the socket first.
    maxBackpressure: maxBufferedBytes * 4 + 1024 * 1024,
    upgrade: (res, req, context) => {
      const key = req.getHeader("sec-websocket-key");
      const protocol = req.getHeader("sec-websocket-protocol");
      const extensions = req.getHeader("sec-websocket-extensions");
      const token = tokenOf(req.getQuery("token") || undefined, req.getHeader("authorization"));
      const resume = req.getQuery("cursor") || undefined;
      if (stopping) return void res.writeStatus("503 Service Unavailable").end("stopping");
      if (!websocket) return void res.writeStatus("404 Not Found").end("this instance runs no WebSocket gateway (NERVE_ROLES)");
      // Before the token check: the refusal is cheap, and the client retries (elsewhere, or here shortly).
      if (!warm) return void res.writeStatus("503 Service Unavailable").writeHeader("Retry-After", "2").end("warming up: the gateway is replaying EVENTS_ACCESS; retry shortly");
      if (full(res)) return;
      let aborted = false;
      res.onAborted(() => (aborted = true));
      // uWS is called again from a macrotask, not from the promise job of the verification.
      tokens.verify(token).then(
        (id) =>
          setImmediate(() => {
            if (aborted) return;
            // Stopped while the token was verified (a remote JWKS can take seconds): no socket opens after closeAll.
            if (stopping) return void res.cork(() => res.writeStatus("503 Service Unavailable").end("stopping"));
            // Counted by the hub when a socket opens, which res.upgrade does before it returns: no other
            // upgrade of the learner can pass this check in between.
            let refused = false;
            res.cork(() => (refused = full(res)));
            if (refused) return;
            if (hub.socketsOf(id.userId) >= maxSocketsPerUser) {
              metrics.closes.inc({ reason: "too_many_sockets" });
              return void res.cork(() => res.writeStatus("429 Too Many Requests").end(`too many sockets: at most ${maxSocketsPerUser} open at once per user; close one first`));
            }
            const conn: Conn = { ws: undefined, userId: id.userId, exp: id.exp, resume, queuedSeq: 0, sentSeq: -1, out: undefined, full: false, behindSince: 0, live: false, held: undefined, replyBytes: 0, skip: undefined, skipUntil: 0, inflight: 0, closed: false };
            res.cork(() => res.upgrade(conn, key, protocol, extensions, context));
          }),
        (err: unknown) =>
          setImmediate(() => {
            if (aborted) return;
            metrics.closes.inc({ reason: "unauthorized" });
            const message = err instanceof AuthError ? err.message : "invalid token";
            res.cork(() => res.writeStatus("401 Unauthorized").writeHeader("WWW-Authenticate", 'Bearer error="invalid_token"').end(message));
          }),
      );
    },
    open: (ws) => {
      const c = ws.getUserData();
      c.ws = ws;
      logger.debug({ user_id: c.userId }, "socket opened");
      hub.opened(c);
      // Outside this callback: it runs inside `res.upgrade`, and a NATS request issued from there
      // (the session's stream-info check) got the fresh socket closed with 1006 before it was used —
      // more often than the rare such close that remains: uWS's cork() after an async upgrade
      // (uNetworking/uWebSockets#1929, fixed after the uWS.js build we can use; README, gateway section).
      setImmediate(() => sessions.start(c));
    },
    message: (ws, data, isBinary) => commands.handle(ws.getUserData(), data, isBinary),
    drain: (ws) => hub.drained(ws.getUserData()),
    close: (ws, code) => {
      logger.debug({ code, user_id: ws.getUserData().userId }, "socket closed");
      hub.closed(ws.getUserData());
    },
  });
  registerHttpRoutes(app, { nc, jsm, metrics, tokens, devTokens: deps.devTokens ?? false, warm: () => warm && !stopping, warming: () => !warm && !stopping, replay: websocket ? () => feed.replayProgress() : undefined, natsUp: () => connectivity.connected(), apiServing: deps.apiServing });
  assertNativeApp(app);

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    const done = (s: us_listen_socket | false) => (s ? resolve(s) : reject(new Error(`gateway could not listen on ${deps.host ?? "*"}:${deps.port}`)));
    // Exclusive: by default uWS sets SO_REUSEPORT, so a second process listening on the same port
    // (another instance, or a test's gateway handed the same ephemeral port) silently shares its
    // connections instead of failing to start.
    if (deps.host) (app.listen as unknown as ListenWithHost).call(app, deps.host, deps.port, LIBUS_LISTEN_EXCLUSIVE_PORT, done);
    else app.listen(deps.port, LIBUS_LISTEN_EXCLUSIVE_PORT, done);
  }).catch((err: unknown) => {
    connectivity.stop();
    throw err;
  });
  const port = uws.us_socket_local_port(listenSocket as unknown as Parameters<typeof uws.us_socket_local_port>[0]);
  logger.info({ port, websocket }, "gateway listening");

  // The replay runs behind the listening port; a failure (NATS unreachable, say) is logged and
  // counted, and the replay starts over after a back-off until it succeeds or the gateway stops.
  let markWarm: () => void = () => undefined;
  const warmed = new Promise<void>((resolve) => (markWarm = resolve));
  if (warm) markWarm();
  const feeding = websocket
    ? supervise(logger, "gateway warm-up", async (signal) => {
        try {
          await feed.start(signal);
          if (signal.aborted) return;
          warm = true;
          markWarm();
          // The feed now runs on its own (the ordered consumer recovers from outages): held until stop.
          await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
        } finally {
          await feed.stop();
        }
      })
    : undefined;

  let stopped: Promise<void> | undefined;
  return {
    port,
    metrics,
    log,
    warmedUp: warmed,
    connections: () => hub.all.size,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        warm = false;
        uws.us_listen_socket_close(listenSocket);
        hub.closeAll(1001, "gateway stopping");
        await feeding?.stop(); // waits for a replay in progress to notice, and closes the feed
        markWarm();
        connectivity.stop(); // the connection is the caller's: it outlives the gateway
        logger.info("gateway stopped");
      })()),
  };
}
