/**
 * A read model's list as one answer (ListNotifications, ListCertificates, GetLearnerProgress: the contract
 * gives them no page), read with a bound so that one request cannot pull an unbounded list into memory —
 * on the query thread, then copied to the main thread; and the pages Nerve adds to the first two.
 */
import { LIST_PAGE, errors } from "../../contracts/index.js";
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

/** A learner's list that ListNotifications or ListCertificates answers, whole or in pages. */
export interface UserList<T> {
  /** The table (a constant of the code, never a value). */
  table: string;
  /** The column that names an item: a page's `after` and `next_after`. */
  id: keyof T & string;
  /** The list's order (`order by …`), which every page follows too. */
  order: string;
  /** The rows after `cursor` in that order: a condition and its values. */
  after(cursor: T): { where: string; params: unknown[] };
  /** Columns worked out when read, beside the table's own (`, <expr> as <name>` each), and their values. */
  computed?: { sql: string; params: unknown[] };
}

/**
 * A user's list: whole (up to {@link MAX_ANSWER_ITEMS}, as the contract has it) when neither `after` nor
 * `limit` is given, else one page (Nerve's addition to CONTRACT.md §5) — the `limit` items after the one
 * named `after`, in the list's order, and `next`, the next page's `after` (null after the last page).
 * An `after` that is no item of the user's list is refused.
 */
export async function userList<T>(tx: Tx, list: UserList<T>, body: { user_id: string; after?: string | undefined; limit?: number | undefined }, what: string): Promise<{ rows: T[]; next?: string | null }> {
  const computed = list.computed ?? { sql: "", params: [] };
  const all = `select *${computed.sql} from ${list.table} where user_id = ?`;
  const first: unknown[] = [...computed.params, body.user_id];
  if (body.after === undefined && body.limit === undefined) return { rows: await boundedRows<T>(tx, `${all} ${list.order}`, first, what) };
  let sql = `${all} ${list.order}`;
  let params: unknown[] = first;
  if (body.after !== undefined) {
    const cursor = await tx.execute<T | undefined>(`select * from ${list.table} where user_id = ? and ${list.id} = ?`, [body.user_id, body.after], "get");
    if (!cursor) throw errors.invalidRequest(`after: ${body.after} is not an item of ${what}`, { after: body.after });
    const after = list.after(cursor);
    sql = `${all} and ${after.where} ${list.order}`;
    params = [...first, ...after.params];
  }
  const limit = body.limit ?? LIST_PAGE.defaultLimit;
  const rows = await tx.execute<T[]>(`${sql} limit ?`, [...params, limit + 1], "all");
  const page = rows.slice(0, limit);
  return { rows: page, next: rows.length > limit ? String(page.at(-1)![list.id]) : null };
}
