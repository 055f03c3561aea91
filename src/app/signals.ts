/** How a service process ends: an orderly stop of Nerve on SIGTERM or SIGINT, bounded in time. */
import type { Logger } from "../log/index.js";
import type { Nerve } from "./nerve.js";
import { ServiceExitCodes } from "./exit-codes.js";

/**
 * On the first SIGTERM or SIGINT: stops `nerve` (the ordered shutdown), runs `after` (e.g. stopping a
 * nats-server this process started), and exits 0 — or exits 1 if a step of the shutdown failed (each is
 * logged; the others still ran) or it takes more than `shutdownMs` + 2 s.
 */
export function stopOnSignals(nerve: Pick<Nerve, "stop">, logger: Logger, shutdownMs: number, after: () => void = () => {}): void {
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    const timer = setTimeout(() => {
      logger.error("shutdown took too long; exiting");
      // Also then: a nats-server this process started must not outlive it (it did, and the next
      // `npm start`, finding it, connected without credentials and was refused).
      try {
        after();
      } catch (err) {
        logger.error({ err }, "stopping what the service started beside it failed");
      }
      process.exit(ServiceExitCodes.Failed);
    }, shutdownMs + 2000);
    let code: number = ServiceExitCodes.Stopped;
    try {
      await nerve.stop();
    } catch (err) {
      logger.error({ err }, "shutdown finished with failures");
      code = ServiceExitCodes.Failed;
    }
    // Also after a failed stop: a nats-server this process started must not outlive it.
    try {
      after();
    } catch (err) {
      logger.error({ err }, "stopping what the service started beside it failed");
    }
    clearTimeout(timer);
    process.exit(code);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}
