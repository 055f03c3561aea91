/** The NATS connection: credentials, reconnects, and the server-version check. */
import { watch } from "../supervision/index.js";
import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { credsAuthenticator, type NatsConnection, type Status } from "@nats-io/nats-core";
import type { Logger } from "../log/index.js";

/** How to reach NATS. */
export interface NatsOptions {
  /** One URL or several, comma-separated. */
  url: string;
  user?: string | undefined;
  password?: string | undefined;
  /** Path to a `.creds` file. */
  creds?: string | undefined;
  /** Connection name shown by the server. */
  name?: string;
  /** Where replies to its requests come; {@link NERVE_INBOX_PREFIX} unless said. */
  inboxPrefix?: string;
}

/**
 * Nerve's own inbox prefix: its durables' deliveries, the gateway's feed and every reply to a request
 * it makes (JetStream API answers included) arrive under it. The default `_INBOX` is what every
 * front-end may subscribe to (to read its own replies), so with it the `client` and `analytics` users
 * could read every event Nerve pulls and every answer it gets; nats.conf gives this prefix to `nerve` alone.
 */
export const NERVE_INBOX_PREFIX = "_INBOX_nerve";

/** A URL as it may be logged or printed: without the user and password nats.js accepts in it. */
export function withoutCredentials(url: string): string {
  return url
    .split(",")
    .map((u) => u.trim().replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, "$1"))
    .join(",");
}

/** How one status event of the connection is logged: its level and fields (never a credential); undefined: not logged. */
export function statusLog(s: Status): { level: "info" | "warn" | "error"; fields: Record<string, unknown> } | undefined {
  switch (s.type) {
    case "disconnect":
    case "reconnect":
      return { level: "warn", fields: { nats: s.type, server: withoutCredentials(s.server) } };
    // Lame duck mode: the server is going away (a rolling restart) and will close this connection; the
    // client then moves to another server of the cluster.
    case "ldm":
      return { level: "warn", fields: { nats: s.type, server: withoutCredentials(s.server) } };
    // The server's -ERR on a live connection: a permissions violation (a publish or subscription the
    // account refuses: a bug or a permissions change), or a protocol error. It names the subject.
    case "error":
      return { level: "error", fields: { nats: s.type, error: s.error?.message ?? String(s.error) } };
    // Messages pile up in a subscription's iterator faster than they are read.
    case "slowConsumer":
      return { level: "warn", fields: { nats: s.type, subject: s.sub.getSubject(), pending: s.pending } };
    // The server stopped answering pings: the client drops the connection and reconnects.
    case "staleConnection":
      return { level: "warn", fields: { nats: s.type } };
    default:
      // reconnecting (every attempt), update (cluster membership), ping, forceReconnect, close: routine.
      return undefined;
  }
}

/** Oldest nats-server this service runs against. */
export const MIN_SERVER_VERSION = "2.9.0";

/** Whether `version` (x.y.z) is at least `min`. */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split(/[.-]/).map((p) => Number.parseInt(p, 10));
  const b = min.split(".").map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (Number.isNaN(x)) return false;
    if (x !== y) return x > y;
  }
  return true;
}

/** Connects (reconnecting forever once up) and refuses a server older than {@link MIN_SERVER_VERSION}. */
export async function connectNats(opts: NatsOptions, logger: Logger): Promise<NatsConnection> {
  const nc = await connect({
    servers: opts.url.split(",").map((s) => s.trim()).filter(Boolean),
    name: opts.name ?? "nerve",
    user: opts.user,
    pass: opts.password,
    authenticator: opts.creds ? credsAuthenticator(readFileSync(opts.creds)) : undefined,
    inboxPrefix: opts.inboxPrefix ?? NERVE_INBOX_PREFIX,
    noAsyncTraces: true, // async stack traces halve publish throughput
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 10_000,
  });
  const version = nc.info?.version ?? "0.0.0";
  if (!versionAtLeast(version, MIN_SERVER_VERSION)) {
    await nc.close();
    throw new Error(`nats-server ${version} is too old: Nerve needs ${MIN_SERVER_VERSION} or newer`);
  }
  if (!nc.info?.jetstream) {
    await nc.close();
    throw new Error(`nats-server at ${withoutCredentials(opts.url)} has JetStream disabled: start it with -js (or jetstream {} in its config)`);
  }
  watch(
    logger,
    "nats status",
    (async () => {
      for await (const s of nc.status()) {
        const line = statusLog(s);
        if (line) logger[line.level](line.fields, "nats status");
      }
    })(),
  );
  logger.info({ server: nc.getServer(), version }, "connected to NATS");
  return nc;
}
