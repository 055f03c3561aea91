/** Reading an admin request's JSON body: every bad input is refused with a message that says what was wanted. */
import { NerveError, errors } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { ConsumerManager } from "../consumers/index.js";
import { isValueOutOfRange } from "../persistence/integer-column.js";
import { outOfRange } from "./wire.js";

/** An admin request's body: a JSON object ({} when empty). */
export function adminBody(data: Uint8Array): Record<string, unknown> {
  if (data.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw errors.invalidRequest("admin requests are JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw errors.invalidRequest("an admin request's body is a JSON object");
  return value as Record<string, unknown>;
}

/** An optional whole number of the request within [min, max]; anything else is refused, saying so. */
export function wholeNumber(b: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = b[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw errors.invalidRequest(`${key} must be a whole number from ${min} to ${max}, not ${JSON.stringify(v)}`);
  return v;
}

/** The request's `consumer`: one of this service's consumers, else `invalid_request` (absent) or `not_found`, listing them. */
export function consumerName(consumers: ConsumerManager, b: Record<string, unknown>): string {
  const known = [...consumers.runners.keys()].join(", ");
  if (typeof b.consumer !== "string") throw errors.invalidRequest(`consumer must name a consumer, one of: ${known}`);
  if (!consumers.runners.has(b.consumer)) throw errors.notFound(`no consumer ${b.consumer}; known: ${known}`);
  return b.consumer;
}

/**
 * What an admin request's failure answers: a NerveError as it is (the request's mistake, or a state that
 * says why); a number the database found beyond its column, the request's ({@link outOfRange}); anything
 * else is this service's failure (the database, NATS, a bug) — `internal`, logged — not the operator's
 * `invalid_request` it used to be answered as.
 */
export function adminFailure(err: unknown, logger: Logger): NerveError {
  if (err instanceof NerveError) return err;
  if (isValueOutOfRange(err)) return outOfRange();
  logger.error({ err }, "admin request failed");
  return errors.internal(`the admin request failed: ${String((err as Error)?.message ?? err)}`);
}
