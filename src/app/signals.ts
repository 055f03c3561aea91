/** How a service process ends: an orderly stop of Nerve on SIGTERM or SIGINT, bounded in time. */
import type { Logger } from "../log/index.js";
import type { Nerve } from "./nerve.js";
import { ServiceExitCodes } from "./exit-codes.js";

/**
 * On the first SIGTERM or SIGINT: stops `nerve` (the ordered shutdown), runs `after` (e.g. stopping a
 * nats-server this process started), and exits 0 — or exits 1 if that takes more than `shutdownMs` + 2 s.
 */
export function stopOnSignals(nerve: Pick<Nerve, "stop">, logger: Logger, shutdownMs: number, after: () => void = () => {}): void {
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    const timer = setTimeout(() => {
      logger.error("shutdown took too long; exiting");
      process.exit(ServiceExitCodes.Failed);
    }, shutdownMs + 2000);
    await nerve.stop();
    after();
    clearTimeout(timer);
    process.exit(ServiceExitCodes.Stopped);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}
