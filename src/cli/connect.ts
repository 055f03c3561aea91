/** How the CLI reaches NATS: the service's configuration and credentials, exactly as `npm start` connects. */
import { errors as natsErrors, type NatsConnection } from "@nats-io/nats-core";
import { pino } from "pino";
import type { ConnectionConfig } from "../config/index.js";
import { connectNats, withoutCredentials } from "../nats/index.js";
import { CliError, ExitCodes } from "./cli-error.js";
import { DEV_NATS_USER, isNatsAuthError, withDevelopmentUser } from "./local-nats.js";

// Warnings (a lost connection, say) go to stderr: stdout is the command's output, maybe JSON.
const logger = pino({ level: "warn", base: undefined }, pino.destination(2));

/**
 * Connects with the configured credentials. Where none are set and the server asks for some — the
 * nats-server `npm start` started with the repository's nats.conf — it connects as nats.conf's
 * development user, as `npm start` does then; never when NODE_ENV=production.
 */
export async function connectCli(config: ConnectionConfig): Promise<NatsConnection> {
  // As it may be printed: a password in the URL stays out of the message.
  const url = withoutCredentials(config.NATS_URL);
  const explicit = Boolean(config.NATS_USER || config.NATS_CREDS);
  try {
    return await attempt(config);
  } catch (err) {
    if (!isNatsAuthError(err)) throw unreachable(url, err);
    if (explicit) throw refused(url, config.NATS_CREDS ? `the credentials in NATS_CREDS=${config.NATS_CREDS}` : `user "${config.NATS_USER}" (NATS_USER, NATS_PASSWORD)`, err);
    if (config.NODE_ENV === "production") {
      throw new CliError(`NATS at ${url} asks for credentials: set NATS_USER and NATS_PASSWORD, or NATS_CREDS (nats.conf's development user is not tried when NODE_ENV=production)`, ExitCodes.Connection, { cause: err });
    }
  }
  try {
    return await attempt(withDevelopmentUser(config));
  } catch (err) {
    if (!isNatsAuthError(err)) throw unreachable(url, err);
    throw refused(url, `nats.conf's development user "${DEV_NATS_USER.user}" (tried because neither NATS_USER nor NATS_CREDS is set)`, err);
  }
}

function attempt(config: ConnectionConfig): Promise<NatsConnection> {
  return connectNats({ url: config.NATS_URL, user: config.NATS_USER, password: config.NATS_PASSWORD, creds: config.NATS_CREDS, name: "nerve-cli", inboxPrefix: config.NATS_INBOX_PREFIX }, logger);
}

function refused(url: string, who: string, cause: unknown): CliError {
  return new CliError(
    `NATS at ${url} refused ${who}: set NATS_USER and NATS_PASSWORD, or NATS_CREDS, to a user of that server (the service's own, which may use JetStream and nerve.admin.>)`,
    ExitCodes.Connection,
    { cause },
  );
}

function unreachable(url: string, cause: unknown): CliError {
  const why = cause instanceof natsErrors.ConnectionError ? "no NATS server answers" : `cannot use NATS (${(cause as Error)?.message ?? cause})`;
  return new CliError(
    `${why} at NATS_URL=${url}. Start Nerve with \`npm start\` (with the default NATS_URL it starts nats-server with the repository's nats.conf when none runs), or set NATS_URL to your NATS server.`,
    ExitCodes.Connection,
    { cause },
  );
}
