/**
 * A fresh root trace context for a command that came without one while tracing is off, so its events
 * still carry a `traceparent` (CONTRACT.md §2). This runs once per such command, on the hot path: the
 * ids are cut from a pool of random bytes refilled 128 contexts at a time, not drawn one syscall each.
 */
import { randomFillSync } from "node:crypto";

const TRACE_ID_BYTES = 16;
const PARENT_ID_BYTES = 8;
const ID_BYTES = TRACE_ID_BYTES + PARENT_ID_BYTES;

const pool = Buffer.allocUnsafe(ID_BYTES * 128);
let next = pool.length;

/** A new W3C `traceparent`, `00-<trace id>-<parent id>-00`: random ids, never all zeros, not sampled. */
export function rootTraceparent(): string {
  for (;;) {
    if (next === pool.length) {
      randomFillSync(pool);
      next = 0;
    }
    const at = next;
    next += ID_BYTES;
    const traceparent = traceparentFromBytes(pool, at);
    if (traceparent) return traceparent;
  }
}

/** The not-sampled `traceparent` whose ids are the 24 bytes at `at`; undefined when either id is all zeros (W3C: invalid). */
export function traceparentFromBytes(bytes: Buffer, at: number): string | undefined {
  if (allZero(bytes, at, TRACE_ID_BYTES) || allZero(bytes, at + TRACE_ID_BYTES, PARENT_ID_BYTES)) return undefined;
  // Written into one scratch line and read out as one string: the hex of the ids, two slices of it and a
  // template of five pieces were four strings more for every command.
  let o = 3;
  for (let i = at; i < at + ID_BYTES; i++) {
    if (i === at + TRACE_ID_BYTES) line[o++] = DASH;
    const b = bytes[i]!;
    line[o++] = HEX[b >> 4]!;
    line[o++] = HEX[b & 15]!;
  }
  return line.toString("latin1");
}

const DASH = 0x2d;
const HEX = Buffer.from("0123456789abcdef", "latin1");
/** `00-<32 hex>-<16 hex>-00`, its fixed characters written once. */
const line = Buffer.from(`00-${"0".repeat(2 * TRACE_ID_BYTES)}-${"0".repeat(2 * PARENT_ID_BYTES)}-00`, "latin1");

function allZero(bytes: Buffer, at: number, length: number): boolean {
  for (let i = at; i < at + length; i++) if (bytes[i] !== 0) return false;
  return true;
}
