/** Pages and answers that fit in one NATS reply. */
import type { NerveError } from "../../contracts/index.js";

/**
 * The first of `items` whose JSON adds up to at most `maxBytes` — at least one, however large (one item
 * came in one message, so it fits in one) — so that a page of answers stays under the server's max_payload.
 */
export function withinBytes<T>(items: readonly T[], maxBytes: number): T[] {
  const out: T[] = [];
  let bytes = 0;
  for (const item of items) {
    bytes += Buffer.byteLength(JSON.stringify(item));
    if (out.length > 0 && bytes > maxBytes) break;
    out.push(item);
  }
  return out;
}

/**
 * What one reply to a query can carry, in the request's encoding: a handler whose answer grows with the
 * data (History, SearchCatalog) measures it as it goes, rather than building it whole and finding it too large.
 */
export interface ReplyRoom {
  /** Bytes the query's result may take, encoded: the server's max_payload less the headers' room and the reply's `{ ok, result }`. */
  readonly resultBytes: number;
  /** Bytes `value` takes in the reply's encoding (a list's encoding is its items' and a few bytes more). */
  bytesOf(value: unknown): number;
  /** The refusal of a result known to take at least `resultBytes`, more than {@link resultBytes}. */
  tooLarge(resultBytes: number): NerveError;
}
