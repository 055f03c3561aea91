/** The gateway's plain HTTP routes: `/healthz`, `/readyz`, `/metrics`, `/`, and the development `/dev/token`. */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { ID_PATTERN, Streams } from "../../contracts/index.js";
import type { TokenVerifier } from "./auth.js";
import type { GatewayMetrics } from "./metrics.js";
import { progressPage } from "./page.js";
import type { HttpResponse, TemplatedApp } from "./uws.js";

/** What the routes need. */
export interface HttpRouteDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  metrics: GatewayMetrics;
  tokens: TokenVerifier;
  devTokens: boolean;
  /** Whether the event log is warm (the start-up replay finished). */
  warm(): boolean;
  /** Whether the NATS connection is up (not between a disconnect and its reconnect). */
  natsUp(): boolean;
}

/** Lifetime of development tokens (s). */
export const DEV_TOKEN_TTL_S = 3600;

/** Registers the routes on the app. */
export function registerHttpRoutes(app: TemplatedApp, deps: HttpRouteDeps): void {
  const page = progressPage(deps.devTokens);
  let readiness: { at: number; result: Promise<Readiness> } | undefined;

  app.get("/healthz", (res) => {
    res.writeHeader("Content-Type", "text/plain").end("ok");
  });

  app.get("/readyz", (res) => {
    if (!readiness || Date.now() - readiness.at > 1000) readiness = { at: Date.now(), result: checkReady(deps) };
    respondLater(res, readiness.result.then((r) => ({ status: r.ready ? "200 OK" : "503 Service Unavailable", type: "application/json", body: JSON.stringify(r) })));
  });

  app.get("/metrics", (res) => {
    const { registry } = deps.metrics;
    respondLater(res, registry.metrics().then((body) => ({ status: "200 OK", type: registry.contentType, body })));
  });

  app.get("/", (res) => {
    res.writeHeader("Content-Type", "text/html; charset=utf-8").writeHeader("Cache-Control", "no-store").end(page);
  });

  app.get("/dev/token", (res, req) => {
    const userId = req.getQuery("user_id") ?? "";
    if (!deps.devTokens) return void res.writeStatus("404 Not Found").end("not found");
    if (!ID_PATTERN.test(userId)) return void res.writeStatus("400 Bad Request").end("user_id must match ^[A-Za-z0-9_-]{1,64}$");
    respondLater(res, deps.tokens.sign(userId, DEV_TOKEN_TTL_S).then((token) => ({ status: "200 OK", type: "application/json", body: JSON.stringify({ user_id: userId, token, expires_in: DEV_TOKEN_TTL_S }) })));
  });

  app.any("/*", (res) => {
    res.writeStatus("404 Not Found").end("not found");
  });
}

/** The readiness report. */
export interface Readiness {
  ready: boolean;
  nats: boolean;
  streams: Record<string, boolean>;
  warm: boolean;
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
  return { ready: nats && warm && Object.values(streams).every(Boolean), nats, streams, warm };
}

// Answers once `body` resolves, unless the client went away meanwhile.
function respondLater(res: HttpResponse, body: Promise<{ status: string; type: string; body: string }>): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  void body
    .catch((err: unknown) => ({ status: "500 Internal Server Error", type: "text/plain", body: String((err as Error).message) }))
    .then((r) =>
      // From a macrotask, like every uWS call made after an await (see the upgrade in gateway.ts).
      setImmediate(() => {
        if (aborted) return;
        res.cork(() => res.writeStatus(r.status).writeHeader("Content-Type", r.type).end(r.body));
      }),
    );
}
