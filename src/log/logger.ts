/** Structured logging through pino. */
import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

/**
 * Fields of a database error that may hold a row's values — PostgreSQL's `detail` ("Key (email)=(…)
 * already exists", "Failing row contains (…)"), `where` and `internalQuery` — and so a learner's
 * email or name: left out of every logged error, its causes' too. The rest (code, table, constraint,
 * the message) says what failed.
 */
const ROW_FIELDS = ["detail", "where", "internalQuery"] as const;

function withoutRowValues(serialized: Record<string, unknown>, depth = 0): Record<string, unknown> {
  for (const k of ROW_FIELDS) delete serialized[k];
  if (depth >= 8) return serialized;
  // Its causes, and an AggregateError's errors (pino serialises them as `aggregateErrors`).
  for (const inner of [serialized.cause, ...(Array.isArray(serialized.aggregateErrors) ? serialized.aggregateErrors : [])]) {
    if (inner !== null && typeof inner === "object") withoutRowValues(inner as Record<string, unknown>, depth + 1);
  }
  return serialized;
}

/** Serialises an error as pino does, without the fields that may hold a row's values. */
export function errorForLog(err: unknown): unknown {
  const serialized = pino.stdSerializers.err(err as Error) as unknown;
  return serialized !== null && typeof serialized === "object" ? withoutRowValues(serialized as Record<string, unknown>) : serialized;
}

/** Creates the service logger (on stdout, unless given where to write). */
export function createLogger(level: string = process.env.LOG_LEVEL ?? "info", destination?: DestinationStream): Logger {
  const options = { level, base: { service: "nerve" }, serializers: { err: errorForLog } };
  return destination ? pino(options, destination) : pino(options);
}
