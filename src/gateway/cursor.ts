/**
 * Resume cursors. A cursor is the EVENTS_ACCESS stream sequence of the last event a client has
 * (or, in a welcome, the last stream position its progress reflects), written `s<seq in base 36>`.
 * The sequence is assigned by JetStream, so it is the same on every gateway instance and survives
 * restarts of the gateway; clients must treat it as opaque.
 */

const CURSOR = /^s[0-9a-z]{1,11}$/;

/** Encodes a stream sequence as a cursor. */
export function encodeCursor(seq: number): string {
  return `s${seq.toString(36)}`;
}

/** Decodes a cursor; undefined when it is not one this gateway issued. */
export function decodeCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined || !CURSOR.test(cursor)) return undefined;
  const seq = Number.parseInt(cursor.slice(1), 36);
  return Number.isSafeInteger(seq) ? seq : undefined;
}
