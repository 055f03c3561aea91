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

/**
 * The first of `items` (best first) that fit in `room` as the result `wrap(items)`: all of them when they
 * do, exactly as before, else as many as fit. Each item is measured alone and counted with a byte more
 * (JSON's comma; MessagePack's array header, two bytes longer past 15 items); the whole list is encoded
 * only when that count leaves the answer in doubt.
 */
export function withinRoom<T>(items: readonly T[], room: ReplyRoom, wrap: (items: T[]) => unknown): T[] {
  const base = room.bytesOf(wrap([]));
  const sizes = items.map((item) => room.bytesOf(item));
  const least = sizes.reduce((sum, n) => sum + n, base);
  if (least + items.length <= room.resultBytes || (least <= room.resultBytes && room.bytesOf(wrap([...items])) <= room.resultBytes)) return [...items];
  const out: T[] = [];
  let bytes = base;
  for (const [i, item] of items.entries()) {
    bytes += sizes[i]! + 1;
    if (bytes > room.resultBytes) break;
    out.push(item);
  }
  return out;
}
