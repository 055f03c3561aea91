/** Runs Nerve for a test: in-process against a private nats-server and a temporary SQLite file. */
import { connect } from "@nats-io/transport-node";
import { headers as natsHeaders, type NatsConnection, type Msg } from "@nats-io/nats-core";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger, type Logger } from "../../src/log/index.js";
import { decodeJson, decodeMsgPack, encodeJson, encodeMsgPack } from "../../contracts/index.js";
import { startNatsServer, type NatsServerHandle } from "./nats-server.js";
import { tempSqlitePath } from "./tmp.js";

/** A test's Nerve with its own server, database and client connection. */
export interface TestNerve {
  nerve: Nerve;
  nats: NatsServerHandle;
  dbPath: string;
  client: NatsConnection;
  env: Record<string, string>;
  /** Stops Nerve only (the server and database stay, for a restart). */
  stopNerve(): Promise<void>;
  /** Starts Nerve again on the same server and database. */
  restartNerve(): Promise<void>;
  /** Stops everything and removes the temporary files. */
  close(): Promise<void>;
}

/** Options of {@link startTestNerve}. */
export interface TestNerveOptions {
  /** The logger Nerve logs to (default: one at `LOG_LEVEL`, silent unless given); see {@link captureLog}. */
  logger?: Logger;
  /**
   * A nats.conf with accounts (the repository's, say) for the private server: Nerve then connects as
   * its `nerve` user and the test's client as its `client` user, unless extraEnv names other credentials.
   */
  natsConf?: string;
}

/** Starts a private nats-server, a temporary SQLite file and Nerve on them; resolves once its gateway is warm. */
export async function startTestNerve(extraEnv: Record<string, string> = {}, opts: TestNerveOptions = {}): Promise<TestNerve> {
  const db = await tempSqlitePath();
  const nats = await startNatsServer({ config: opts.natsConf }).catch(async (err: unknown) => {
    await db.cleanup();
    throw err;
  });
  const users = opts.natsConf ? { NATS_USER: "nerve", NATS_PASSWORD: "nerve-dev" } : {};
  const env = { NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", ...users, ...extraEnv };
  const logger = opts.logger ?? createLogger(env.LOG_LEVEL);
  let started: Nerve | undefined;
  let client: NatsConnection;
  try {
    started = await startNerve(loadConfig(env), logger);
    await started.gateway.warmedUp;
    client = await connect({ servers: nats.url, noAsyncTraces: true, ...(opts.natsConf ? { user: "client", pass: "client-dev" } : {}) });
  } catch (err) {
    // A start that fails leaves nothing behind: the server would run until the test process exits, the files for ever.
    await started?.stop().catch(() => undefined);
    await nats.stop().catch(() => undefined);
    await db.cleanup().catch(() => undefined);
    throw err;
  }
  let nerve = started;
  const t: TestNerve = {
    get nerve() {
      return nerve;
    },
    nats,
    dbPath: db.path,
    client,
    env,
    stopNerve: () => nerve.stop(),
    async restartNerve() {
      nerve = await startNerve(loadConfig(env), logger);
      await nerve.gateway.warmedUp;
    },
    async close() {
      await nerve.stop().catch(() => undefined);
      await client.close().catch(() => undefined);
      await nats.stop();
      await db.cleanup();
    },
  } as TestNerve;
  return t;
}

/** A decoded reply with its headers. */
export interface Reply<T = any> {
  body: T;
  headers: Record<string, string>;
}

/** Options of a test request. */
export interface RequestOptions {
  json?: boolean;
  contentType?: string;
  headers?: Record<string, string>;
  raw?: Uint8Array;
  timeout?: number;
}

/** Sends a request and decodes the reply by its Content-Type. */
export async function request<T = any>(nc: NatsConnection, subject: string, body: unknown = {}, opts: RequestOptions = {}): Promise<Reply<T>> {
  const h = natsHeaders();
  const ct = opts.contentType ?? (opts.json ? "application/json" : "application/msgpack");
  h.set("Content-Type", ct);
  for (const [k, v] of Object.entries(opts.headers ?? {})) h.set(k, v);
  const data = opts.raw ?? (opts.json ? encodeJson(body) : encodeMsgPack(body));
  const msg = await nc.request(subject, data, { timeout: opts.timeout ?? 10_000, headers: h });
  return decodeReply<T>(msg);
}

/** Decodes a reply message. */
export function decodeReply<T>(msg: Msg): Reply<T> {
  const headers: Record<string, string> = {};
  for (const k of msg.headers?.keys() ?? []) headers[k] = msg.headers!.get(k);
  const decoded = headers["Content-Type"] === "application/json" ? decodeJson(msg.data) : decodeMsgPack(msg.data);
  if (!decoded.ok) throw decoded.error;
  return { body: decoded.value as T, headers };
}

/** Sends a command: `cmd.<context>.<type>.<id>`. */
export function command<T = any>(nc: NatsConnection, context: string, type: string, id: string, body: unknown = {}, opts: RequestOptions = {}): Promise<Reply<T>> {
  return request<T>(nc, `cmd.${context}.${type}.${id}`, body, opts);
}

/** Sends a query: `query.<context>.<type>`. */
export function query<T = any>(nc: NatsConnection, context: string, type: string, body: unknown, opts: RequestOptions = {}): Promise<Reply<T>> {
  return request<T>(nc, `query.${context}.${type}`, body, opts);
}

/** One log line as pino wrote it. */
export type LogLine = { level: number; msg?: string; err?: { type?: string; message?: string; stack?: string }; [key: string]: unknown };

/** A logger that keeps its lines in memory, for tests that check what was logged. */
export interface CapturedLog {
  logger: Logger;
  /** Every line at or above the logger's level, parsed. */
  readonly lines: LogLine[];
  /** Lines at level error (50) or fatal (60). */
  errors(): LogLine[];
}

/** The service's logger ({@link createLogger}) at `level` (default `warn`), its lines kept in memory instead of printed. */
export function captureLog(level = "warn"): CapturedLog {
  const lines: LogLine[] = [];
  const logger = createLogger(level, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines, errors: () => lines.filter((l) => l.level >= 50) };
}
