import { causes } from "../support/causes.js";

/**
 * What an `integer` column holds. Versions (nerve_events.aggregate_version) and dead letters' ids are
 * `integer`: 32 bits on PostgreSQL, which refuses a larger value bound against them (SQLSTATE 22003) even
 * in a comparison, where SQLite, whose integers are 64-bit, compares and finds nothing. A request may carry
 * any safe integer, so a reader bounds what it binds by {@link INTEGER_COLUMN_MAX} and both answer alike.
 */

/** The largest value of an `integer` column on PostgreSQL (2^31 − 1): no stored version or id is larger. */
export const INTEGER_COLUMN_MAX = 2_147_483_647;

/** PostgreSQL's SQLSTATE of a value its column's type cannot hold (numeric_value_out_of_range). */
const NUMERIC_VALUE_OUT_OF_RANGE = "22003";

/**
 * Whether `err`, or an error of its `cause` chain, is PostgreSQL's refusal of a number its column's type
 * cannot hold: a bound value of the request's that no reader bounded — the request's, not a failure of the service.
 */
export function isValueOutOfRange(err: unknown): boolean {
  for (const e of causes(err)) if ((e as { code?: unknown }).code === NUMERIC_VALUE_OUT_OF_RANGE) return true;
  return false;
}
