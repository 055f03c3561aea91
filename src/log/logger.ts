/** Structured logging through pino. */
import { pino, type Logger } from "pino";

export type { Logger };

/** Creates the service logger. */
export function createLogger(level: string = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({ level, base: { service: "nerve" } });
}
