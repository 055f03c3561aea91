/** Pages that fit in one NATS reply. */

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
