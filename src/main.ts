/** `npm start`: the whole service in one process. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import { startNerve } from "./app/index.js";
import { findNatsServer, isListening, startLocalNats } from "./cli/local-nats.js";
import { ConfigSchema, loadConfig } from "./config/index.js";
import { createLogger } from "./log/index.js";
import { installProcessGuards } from "./supervision/index.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const logger = createLogger(config.LOG_LEVEL);
  // A rejection nothing handled is logged and counted, never the end of the service.
  installProcessGuards(logger);
  if (config.jwtSecretIsDevelopment) logger.warn("NERVE_JWT_SECRET is not set: using the development secret");

  let localNats: ChildProcess | undefined;
  const defaultUrl = ConfigSchema.parse({}).NATS_URL;
  if (!(await isListening(config.NATS_URL.split(",")[0]!))) {
    const binary = findNatsServer();
    if (config.NATS_URL !== defaultUrl || !binary) {
      logger.fatal(
        `nothing answers at NATS_URL=${config.NATS_URL}. Either start a NATS server with JetStream there ` +
          `(e.g. \`nats-server -c nats.conf\` from the repository), or install nats-server on the PATH ` +
          `(Debian: \`apt-get install nats-server\`) and run \`npm start\` again with the default NATS_URL so Nerve starts one itself.`,
      );
      process.exit(1);
    }
    logger.info({ binary }, "no NATS at the default URL: starting nats-server with nats.conf");
    localNats = await startLocalNats(binary, join(root, "nats.conf"), config.NATS_URL, root);
    // nats.conf asks for credentials: the service uses its own development user unless told otherwise.
    config = { ...config, NATS_USER: config.NATS_USER ?? "nerve", NATS_PASSWORD: config.NATS_PASSWORD ?? "nerve-dev" };
  }

  const nerve = await startNerve(config, logger);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    const timer = setTimeout(() => {
      logger.error("shutdown took too long; exiting");
      process.exit(1);
    }, config.NERVE_SHUTDOWN_MS + 2000);
    await nerve.stop();
    localNats?.kill("SIGTERM");
    clearTimeout(timer);
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((err) => {
  console.error("nerve failed to start:", err instanceof Error ? err.message : err);
  process.exit(1);
});
