/** Configuration, parsed once at start-up from the environment (CONTRACT.md §7) by one zod schema. */
import { availableParallelism, hostname } from "node:os";
import { z } from "zod";
import { jwksLocation } from "./jwks-location.js";
import { parseExternalConsumers } from "./external-consumers.js";
import { natsServers } from "./nats-url.js";
import { isInMemorySqlite } from "../persistence/sqlite-lock.js";

/**
 * Where SQLite's commits run when `NERVE_SQLITE_WRITER=auto`, by the cores this process may use (Node's
 * availableParallelism: the CPU affinity, not a container's CPU quota): on the main thread on two or
 * fewer, where a write thread of its own only adds a thread that waits for a core, and in the write
 * worker on more.
 */
export function sqliteWriterFor(cores: number): "inline" | "worker" {
  return cores <= 2 ? "inline" : "worker";
}

/** The development JWT secret, used (with a warning) when none is set outside production. */
export const DEV_JWT_SECRET = "nerve-development-secret-do-not-use-in-production";

/**
 * A whole number from the environment: unset takes the default; set, it must be one — `z.coerce.number`
 * read "" and " " as 0, so an empty NERVE_HTTP_PORT listened on a random port and an empty
 * NERVE_CONSUMER_LAG_LIMIT turned the projections' backpressure off, without a word.
 */
const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return def;
      const t = v.trim();
      if (/^-?\d+$/.test(t)) return Number(t);
      ctx.addIssue({ code: "custom", message: t === "" ? "must be a whole number (it is set but empty)" : `must be a whole number, not "${v}"` });
      return z.NEVER;
    })
    .pipe(z.number().int().min(min).max(max));

/** Longest delay Node's timers take (2^31 − 1 ms; longer ones fire at once), less a margin for the deadlines built on them. */
const TIMER_MAX_MS = 2_000_000_000;

// An OTLP endpoint: an http(s) URL; set but empty counts as unset, as OpenTelemetry's SDKs take it.
const otlpUrl = z.preprocess((v) => (v === "" ? undefined : v), z.string().regex(/^https?:\/\/\S+$/, "must be an http:// or https:// URL").optional());

// A claim every token must carry exactly: white space at either end (" ", "issuer ") refused every token.
const tokenClaim = z
  .string()
  .min(1)
  .refine((v) => v.trim() === v && v !== "", "must not be blank or begin or end with white space")
  .optional();

// A postgres:// URL the driver can use: it parses, its %-escapes decode, and it names a database
// ("postgres://%zz" stopped the service with MikroORM's "No database specified", naming no variable).
function isPostgresUrl(v: string): boolean {
  try {
    const u = new URL(v);
    for (const part of [u.hostname, u.username, u.password, u.pathname]) decodeURIComponent(part);
    return decodeURIComponent(u.pathname.slice(1)) !== "";
  } catch {
    return false;
  }
}

/** What one process can run (CONTRACT.md §8). */
export const ROLES = ["commands", "consumers", "gateway"] as const;
export type Role = (typeof ROLES)[number];

/** The environment schema with named defaults. */
export const ConfigSchema = z
  .object({
    NODE_ENV: z.string().default("development"),
    NATS_URL: z
      .string()
      .default("nats://127.0.0.1:4222")
      .superRefine((v, ctx) => {
        try {
          natsServers(v);
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message });
        }
      }),
    NATS_USER: z.string().optional(),
    NATS_PASSWORD: z.string().optional(),
    NATS_CREDS: z.string().optional(),
    NERVE_DB: z
      .string()
      .regex(/^(sqlite:.+|postgres(ql)?:\/\/.+)$/, "must be sqlite:<path> or a postgres:// URL")
      .refine((v) => v.startsWith("sqlite:") || isPostgresUrl(v), "must be a postgres:// URL naming its database, like postgres://user@host:5432/nerve (any %-escape valid)")
      // SQLite's in-memory database took every answered command and lost it at the next start; a blank
      // path failed later with "disk I/O error", naming no variable.
      .refine((v) => !v.startsWith("sqlite:") || !isInMemorySqlite(v.slice(7).trim()), "sqlite:<path> must name a file: an in-memory database (:memory:, mode=memory) loses every answered command at a restart")
      .default("sqlite:./data/nerve.sqlite"),
    NERVE_HTTP_PORT: int(8080).pipe(z.number().max(65535)),
    NERVE_JWT_SECRET: z
      .string()
      .min(16)
      .refine((v) => v.replace(/\s/gu, "").length >= 16, "must hold at least 16 characters other than white space")
      .optional(),
    /** An identity provider's public keys (RS256, ES256, EdDSA tokens): a JWKS file path or an https:// URL. */
    NERVE_JWT_JWKS: z.string().min(1).optional(),
    /** When set, every token must carry this `iss`. */
    NERVE_JWT_ISSUER: tokenClaim,
    /** When set, every token must carry this `aud`. */
    NERVE_JWT_AUDIENCE: tokenClaim,
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** Most requests (commands and queries) one instance handles at once; more are answered `unavailable` at once. */
    NERVE_MAX_IN_HAND: int(8192, 1),
    /** Most bytes of request bodies one instance holds at once; more are answered `unavailable` at once. */
    NERVE_MAX_IN_HAND_BYTES: int(64 * 1024 * 1024, 1024 * 1024),
    /** Most commands waiting in one actor's mailbox before `unavailable`. */
    NERVE_MAILBOX_SIZE: int(256, 1),
    /** Most live actors before the least recently used idle ones are passivated. */
    NERVE_MAX_ACTORS: int(100_000, 1),
    /** An actor idle this long is passivated. */
    NERVE_ACTOR_IDLE_MS: int(5 * 60_000, 10, TIMER_MAX_MS),
    /** Most access events the gateway keeps for resumes, over all learners (its memory bound). */
    NERVE_GATEWAY_BUFFER_EVENTS: int(250_000, 1),
    /** WebSockets one learner (a token's `sub`) may have open at once on one gateway; more are refused with 429. */
    NERVE_GATEWAY_SOCKETS_PER_USER: int(16, 1),
    /**
     * WebSockets one gateway may have open at once, over all learners; more are refused with 503 and Retry-After.
     * 0 (the default): the process's open-files limit less a reserve (a tenth, at least 256; src/gateway/socket-budget.ts).
     */
    NERVE_GATEWAY_MAX_SOCKETS: int(0, 0),
    /**
     * Events a projection of this process may fall behind before commands wait for it (src/consumers/backlog.ts);
     * 0 never waits. Replaying, stalled (1 s without progress) and process-manager consumers are never waited for.
     */
    NERVE_CONSUMER_LAG_LIMIT: int(5_000, 0),
    /** In-flight JetStream publishes of the outbox relay. */
    NERVE_RELAY_WINDOW: int(256, 1),
    /** Bound of an orderly shutdown. */
    NERVE_SHUTDOWN_MS: int(15_000, 100, TIMER_MAX_MS),
    /** Where policy-sync moves courses of a deprecated policy that names no replacement. */
    NERVE_DEFAULT_POLICY_ID: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
    /** Serves the gateway's development token helper (`/dev/token`); refused in production. */
    NERVE_DEV_TOKENS: z
      .enum(["true", "false", "1", "0"])
      .default("false")
      .transform((v) => v === "true" || v === "1"),
    /** SQLite synchronous pragma. */
    NERVE_SQLITE_SYNC: z.enum(["FULL", "NORMAL"]).default("FULL"),
    /**
     * Who commits on a SQLite file: a worker thread with a connection of its own (group commits, write-only
     * projections' batches, process managers' inbox rows), the same engine and connection on the main
     * thread (`inline`: no hop between threads, but the event loop waits out each transaction), or the main
     * connection. `auto` (the default) is inline on a machine with two cores or fewer and the worker on
     * more ({@link sqliteWriterFor}). The worker beat the main connection (the soak saturated at 1,912
     * requests/s with it against 1,130–1,208); on two cores the worker's thread waits for a core with the
     * main thread, NATS and the V8 helpers, and inline spent 2.9–12.8 µs less machine CPU per command in
     * each of six rounds of `BENCH_PAIRS_ENGINES=inline,worker npm run bench:pairs` (the 30-minute soak: 15
     * points less of a core at 850/s), at the price of each commit's fsync on the event loop (README,
     * stops 52–53).
     */
    NERVE_SQLITE_WRITER: z
      .enum(["auto", "worker", "inline", "main"])
      .default("auto")
      .transform((v) => (v === "auto" ? sqliteWriterFor(availableParallelism()) : v)),
    /** This instance's name: in leases, logs and the Nerve-Instance reply header. */
    NERVE_INSTANCE_ID: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,128}$/, "must be 1..128 of A-Z a-z 0-9 _ . : -")
      .default(() => `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_.:-]/g, "_").slice(0, 128)),
    /** What this process runs: any non-empty subset of commands, consumers, gateway. */
    NERVE_ROLES: z
      .string()
      .default(ROLES.join(","))
      .transform((s) => s.split(",").map((r) => r.trim()).filter(Boolean))
      .pipe(z.array(z.enum(ROLES)).min(1, "must name at least one of commands, consumers, gateway"))
      .transform((roles) => new Set<Role>(roles)),
    /** PostgreSQL: connections of the main pool (group commits, projections, the command path's reads, relay, timers). */
    NERVE_PG_POOL: int(10, 2, 1000),
    /** PostgreSQL: read models' queries (SearchCatalog, …) that run at once, on a pool of their own; more wait (3 s at most, 64 at most) or get `unavailable`. */
    NERVE_PG_QUERIES: int(4, 1, 1000),
    /** PostgreSQL: statement_timeout of those queries (ms); a query cut off is answered `unavailable`. */
    NERVE_PG_QUERY_TIMEOUT_MS: int(5000, 1, TIMER_MAX_MS),
    /**
     * Days a projection's inbox row is kept, by its event's time (src/consumers/inbox-prune.ts): far past
     * ack_wait and JetStream's duplicate window, after which the projection is right without it. `0` or
     * `off` keeps every row. Process managers keep theirs regardless.
     */
    NERVE_INBOX_RETENTION_DAYS: z
      .string()
      .optional()
      .transform((v) => (v?.trim().toLowerCase() === "off" ? "0" : v))
      .pipe(int(7, 0, 36_500)),
    /** Replicas of the five streams (3 on a three-node cluster). */
    NERVE_STREAM_REPLICAS: int(1, 1).pipe(z.number().max(5)),
    /** OpenTelemetry: the OTLP/HTTP collector's base URL (`/v1/traces` appended); tracing runs only when this or the next is set. */
    OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl,
    /** OpenTelemetry: the full OTLP/HTTP traces URL; wins over OTEL_EXPORTER_OTLP_ENDPOINT. */
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlpUrl,
    /** Durables provisioned for external subscribers (`name:filter` pairs); none by default. */
    NERVE_EXTERNAL_CONSUMERS: z
      .string()
      .default("")
      .transform((v, ctx) => {
        try {
          return parseExternalConsumers(v);
        } catch (err) {
          ctx.addIssue({ code: "custom", message: (err as Error).message });
          return z.NEVER;
        }
      }),
  })
  .superRefine((c, ctx) => {
    userWithPassword(c, ctx);
    if (c.NODE_ENV === "production" && c.NERVE_DEV_TOKENS) {
      ctx.addIssue({ code: "custom", path: ["NERVE_DEV_TOKENS"], message: "must be off when NODE_ENV=production" });
    }
    if (c.NODE_ENV === "production" && !c.NERVE_JWT_SECRET && !c.NERVE_JWT_JWKS) {
      ctx.addIssue({ code: "custom", path: ["NERVE_JWT_SECRET"], message: "is required when NODE_ENV=production unless NERVE_JWT_JWKS is set" });
    }
    if (c.NODE_ENV === "production" && c.NERVE_JWT_SECRET && isPublicSecret(c.NERVE_JWT_SECRET)) {
      ctx.addIssue({
        code: "custom",
        path: ["NERVE_JWT_SECRET"],
        message: "is a published placeholder or the development secret, with which anyone can sign tokens for any user: set random bytes of your own (e.g. `openssl rand -hex 32`)",
      });
    }
    if (c.NERVE_JWT_JWKS) {
      try {
        jwksLocation(c.NERVE_JWT_JWKS);
      } catch (err) {
        ctx.addIssue({ code: "custom", path: ["NERVE_JWT_JWKS"], message: (err as Error).message });
      }
    }
  });

// NATS_USER without NATS_PASSWORD (or the reverse) connected without the other: the server's
// "Authorization Violation", naming neither variable.
function userWithPassword(c: { NATS_USER?: string | undefined; NATS_PASSWORD?: string | undefined }, ctx: z.RefinementCtx): void {
  if ((c.NATS_USER === undefined) === (c.NATS_PASSWORD === undefined)) return;
  const [missing, set] = c.NATS_USER === undefined ? ["NATS_USER", "NATS_PASSWORD"] : ["NATS_PASSWORD", "NATS_USER"];
  ctx.addIssue({ code: "custom", path: [missing], message: `must be set with ${set} (a user and its password go together)` });
}

/** A secret anyone can read: the development one, or a template's placeholder ("change-me…", in any case). */
function isPublicSecret(secret: string): boolean {
  return secret === DEV_JWT_SECRET || /change[-_ ]?me/i.test(secret);
}

/**
 * `NERVE_*` variables the configuration does not know — most likely misspelt (NERVE_STREAM_REPLICA would
 * leave the streams at one replica without a word) — each with the known name it is closest to, if any.
 */
export function unknownNerveVariables(env: Record<string, string | undefined> = process.env): { name: string; didYouMean: string | undefined }[] {
  const known = Object.keys(ConfigSchema.shape).filter((k) => k.startsWith("NERVE_"));
  return Object.keys(env)
    .filter((k) => k.startsWith("NERVE_") && !known.includes(k))
    .sort()
    .map((name) => {
      let best: string | undefined;
      let bestDistance = 4; // More than three edits apart is no suggestion.
      for (const k of known) {
        const d = editDistance(name, k);
        if (d < bestDistance) [best, bestDistance] = [k, d];
      }
      return { name, didYouMean: best };
    });
}

// Levenshtein distance between two short names.
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The parsed configuration. `jwtSecret` is the HS256 secret: NERVE_JWT_SECRET, else the development
 * one; undefined (HS256 tokens refused) when only NERVE_JWT_JWKS is set and no development tokens
 * are served.
 */
export type Config = z.infer<typeof ConfigSchema> & { jwtSecret: string | undefined; jwtSecretIsDevelopment: boolean };

/** What the CLI reads: the connection to NATS, as the service connects (nothing else of the service's settings). */
const { NODE_ENV, NATS_URL, NATS_USER, NATS_PASSWORD, NATS_CREDS } = ConfigSchema.shape;
export const ConnectionSchema = z.object({
  NODE_ENV,
  NATS_URL,
  NATS_USER,
  NATS_PASSWORD,
  NATS_CREDS,
  // The CLI's alone: the service's replies come on its own prefix, the one nats.conf gives the nerve user.
  NATS_INBOX_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, "a subject prefix: tokens of letters, digits, _ and - joined by dots, no wildcards")
    .optional(),
}).superRefine(userWithPassword);
export type ConnectionConfig = z.infer<typeof ConnectionSchema>;

/**
 * The connection settings alone: the CLI needs no JWT secret or database, and with the service's whole
 * configuration `NODE_ENV=production nerve status` refused to run without NERVE_JWT_SECRET.
 */
export function loadConnectionConfig(env: Record<string, string | undefined> = process.env): ConnectionConfig {
  const parsed = ConnectionSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  return parsed.data;
}

/** Parses the environment; throws one error naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  const c = parsed.data;
  const development = !c.NERVE_JWT_SECRET && (!c.NERVE_JWT_JWKS || c.NERVE_DEV_TOKENS);
  return { ...c, jwtSecret: c.NERVE_JWT_SECRET ?? (development ? DEV_JWT_SECRET : undefined), jwtSecretIsDevelopment: development };
}
