/**
 * A read model's list as one answer (ListNotifications, ListCertificates, GetLearnerProgress: the contract
 * gives them no page), read with a bound so that one request cannot pull an unbounded list into memory —
 * on the query thread, then copied to the main thread.
 */
import { errors } from "../../contracts/index.js";
import type { Tx } from "../consumers/index.js";

/**
 * Most items of one such answer: each is at least ~100 bytes of JSON, so more than this never fits in one
 * NATS message of the default max_payload (1 MiB) anyway; refusing them here changes no answer that could
 * have been sent.
 */
export const MAX_ANSWER_ITEMS = 10_000;

/** The rows of `sql` (which must end where `limit ?` may follow), at most {@link MAX_ANSWER_ITEMS}; more is refused, naming `what`. */
export async function boundedRows<T>(tx: Tx, sql: string, params: unknown[], what: string): Promise<T[]> {
  const rows = await tx.execute<T[]>(`${sql} limit ?`, [...params, MAX_ANSWER_ITEMS + 1], "all");
  if (rows.length > MAX_ANSWER_ITEMS) throw errors.invalidRequest(`${what} holds more than ${MAX_ANSWER_ITEMS} items, more than one answer carries`, { max_items: MAX_ANSWER_ITEMS });
  return rows;
}
