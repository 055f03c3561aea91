/** `npm start`: the whole service in one process. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import { ServiceExitCodes, startNerve, stopOnSignals } from "./app/index.js";
import { findNatsServer, isListening, isNatsAuthError, startBeside, startLocalNats, withDevelopmentUser } from "./cli/local-nats.js";
import { ConfigSchema, DEV_EXTERNAL_CONSUMERS, loadConfig, parseExternalConsumers, unknownNerveVariables } from "./config/index.js";
import { createLogger } from "./log/index.js";
import { withoutCredentials } from "./nats/index.js";
import { installProcessGuards } from "./supervision/index.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The configuration for a nats-server of the repository's nats.conf: it asks for credentials, so the service
 * uses its development user unless told otherwise; and its analytics user reads the durables `bi`, provided
 * unless NERVE_EXTERNAL_CONSUMERS says otherwise.
 */
function onRepositoryNatsConf(config: ReturnType<typeof loadConfig>): ReturnType<typeof loadConfig> {
  const withUser = withDevelopmentUser(config);
  return process.env.NERVE_EXTERNAL_CONSUMERS === undefined ? { ...withUser, NERVE_EXTERNAL_CONSUMERS: parseExternalConsumers(DEV_EXTERNAL_CONSUMERS) } : withUser;
}

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    console.error((err as Error).message);
    process.exit(ServiceExitCodes.BadConfiguration);
  }
  const logger = createLogger(config.LOG_LEVEL);
  // A rejection nothing handled is logged and counted, never the end of the service.
  installProcessGuards(logger);
  if (config.jwtSecretIsDevelopment) logger.warn("NERVE_JWT_SECRET is not set: using the development secret");
  for (const v of unknownNerveVariables()) {
    logger.warn({ variable: v.name, did_you_mean: v.didYouMean }, `${v.name} is not a Nerve setting and is ignored${v.didYouMean ? ` (did you mean ${v.didYouMean}?)` : ""}`);
  }

  let localNats: ChildProcess | undefined;
  const defaultUrl = ConfigSchema.parse({}).NATS_URL;
  if (!(await isListening(config.NATS_URL))) {
    const binary = findNatsServer();
    if (config.NATS_URL !== defaultUrl || !binary) {
      logger.fatal(
        `nothing answers at NATS_URL=${withoutCredentials(config.NATS_URL)}. Either start a NATS server with JetStream there ` +
          `(e.g. \`nats-server -c nats.conf\` from the repository), or install nats-server on the PATH ` +
          `(Debian: \`apt-get install nats-server\`) and run \`npm start\` again with the default NATS_URL so Nerve starts one itself.`,
      );
      process.exit(ServiceExitCodes.Failed);
    }
    logger.info({ binary }, "no NATS at the default URL: starting nats-server with nats.conf");
    localNats = await startLocalNats(binary, join(root, "nats.conf"), config.NATS_URL, root);
    config = onRepositoryNatsConf(config);
  }

  let nerve;
  try {
    const first = config;
    nerve = await startBeside(() => startNerve(first, logger), localNats);
  } catch (err) {
    // A server already there that asks for credentials, none set, outside production: most likely one started
    // with the repository's nats.conf (`nats-server -c nats.conf`, as the message above advises) — connect as
    // its development user, as the CLI does. Was: "Authorization Violation", and no way named.
    if (localNats || !isNatsAuthError(err) || config.NATS_USER || config.NATS_CREDS || config.NODE_ENV === "production") throw err;
    logger.warn("NATS asks for credentials and none are set: connecting as nats.conf's development user (set NATS_USER and NATS_PASSWORD, or NATS_CREDS, for any other server)");
    config = onRepositoryNatsConf(config);
    nerve = await startNerve(config, logger);
  }
  stopOnSignals(nerve, logger, config.NERVE_SHUTDOWN_MS, () => localNats?.kill("SIGTERM"));
}

main().catch((err) => {
  console.error("nerve failed to start:", err instanceof Error ? err.message : err);
  process.exit(ServiceExitCodes.Failed);
});
