/**
 * An independent MessagePack reader (@msgpack/msgpack) for checking that Nerve's bytes are plain
 * MessagePack. @msgpack/msgpack 3.1 decodes strings over 200 bytes with a TextDecoder that drops a
 * leading U+FEFF, so this reads raw string bytes and decodes them keeping every character.
 */
import { decode } from "@msgpack/msgpack";

const keepBom = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decodes `bytes` with @msgpack/msgpack, every string exactly as sent. */
export function theirRead(bytes: Uint8Array): unknown {
  const strings = (v: unknown): unknown =>
    v instanceof Uint8Array ? keepBom.decode(v)
    : Array.isArray(v) ? v.map(strings)
    : v !== null && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, strings(x)]))
    : v;
  return strings(decode(bytes, { rawStrings: true }));
}
