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

/**
 * One page of a list in keyset order: the rows of `sql` (which must end where `limit ?` may follow), at
 * most `limit`, and the cursor of the next page (the last row's id; null after the last page).
 */
export async function pageOfRows<T>(tx: Tx, sql: string, params: unknown[], limit: number, idOf: (row: T) => string): Promise<{ rows: T[]; next: string | null }> {
  const rows = await tx.execute<T[]>(`${sql} limit ?`, [...params, limit + 1], "all");
  const page = rows.slice(0, limit);
  return { rows: page, next: rows.length > limit ? idOf(page.at(-1)!) : null };
}

/** Refuses a page cursor that names no item of the list. */
export function unknownCursor(after: string, what: string): Error {
  return errors.invalidRequest(`after: ${after} is not an item of ${what}`, { after });
}
