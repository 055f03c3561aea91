/**
 * UUID version 7 from a pooled random buffer: the `uuid` package asks the OS for 16 fresh bytes on
 * every call, which cost ~5 % of the command path's CPU. Ids are monotonic within this process: in
 * the same millisecond the 12-bit `rand_a` field counts up (RFC 9562 §6.2, method 1), and when it
 * overflows the timestamp moves one millisecond ahead.
 */
import { randomFillSync } from "node:crypto";

const POOL_BYTES = 16 * 1024;
const pool = Buffer.alloc(POOL_BYTES);
let poolAt = POOL_BYTES;
let lastMs = -1;
let counter = 0;

function randomBytes(n: number): number {
  if (poolAt + n > POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt += n;
  return at;
}

/** A new UUIDv7 in lower-case canonical form. */
export function uuidv7(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    const at = randomBytes(2);
    counter = ((pool[at]! << 8) | pool[at + 1]!) & 0x7ff; // start in the lower half: room to count
  } else if (++counter > 0xfff) {
    lastMs++;
    counter = 0;
  }
  const ms = lastMs;
  const r = randomBytes(8);
  // Written as text into one reused buffer and read out once: one string per id, no arrays of parts.
  hex(0, Math.floor(ms / 2 ** 40) & 0xff);
  hex(2, Math.floor(ms / 2 ** 32) & 0xff);
  hex(4, (ms >>> 24) & 0xff);
  hex(6, (ms >>> 16) & 0xff);
  hex(9, (ms >>> 8) & 0xff);
  hex(11, ms & 0xff);
  hex(14, 0x70 | (counter >>> 8));
  hex(16, counter & 0xff);
  hex(19, 0x80 | (pool[r]! & 0x3f));
  hex(21, pool[r + 1]!);
  for (let i = 0; i < 6; i++) hex(24 + 2 * i, pool[r + 2 + i]!);
  return text.toString("latin1", 0, 36);
}

/** The id being written: 36 characters, the dashes in place. */
const text = Buffer.from("00000000-0000-0000-0000-000000000000", "latin1");
const DIGITS = Buffer.from("0123456789abcdef", "latin1");

function hex(at: number, byte: number): void {
  text[at] = DIGITS[byte >>> 4]!;
  text[at + 1] = DIGITS[byte & 0xf]!;
}

/**
 * The least UUIDv7 of millisecond `ms` (`rand_a` and `rand_b` all zero): an id made at `ms` or later sorts
 * at or after it, one made earlier before it — as text, and so by a primary key over a column of them. A
 * time bound for such a key's range (InboxPrune's); `ms` is clamped to the 48 bits the field holds.
 */
export function uuidv7Floor(ms: number): string {
  const t = Math.min(2 ** 48 - 1, Math.max(0, Math.floor(ms)));
  const h = t.toString(16).padStart(12, "0");
  return `${h.slice(0, 8)}-${h.slice(8)}-7000-8000-000000000000`;
}
