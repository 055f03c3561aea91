/**
 * A MessagePack writer as a careless client in another language might have: plain JSON-like values
 * only, and strings written code unit by code unit, so a lone surrogate goes out as the three bytes
 * `ED A0 80`… (WTF-8) instead of being replaced by U+FFFD as msgpackr does. With it a test can send the
 * server the invalid UTF-8 it must refuse, which the project's own encoder cannot produce.
 */

/** Encodes a JSON-like value (null, boolean, number, string, array, plain object); throws on anything else. */
export function packLoosely(value: unknown): Uint8Array {
  const out: number[] = [];
  write(value, out);
  return Uint8Array.from(out);
}

function write(v: unknown, out: number[]): void {
  if (v === null || v === undefined) return void out.push(0xc0);
  if (v === true) return void out.push(0xc3);
  if (v === false) return void out.push(0xc2);
  if (typeof v === "number") return writeNumber(v, out);
  if (typeof v === "string") return writeString(v, out);
  if (Array.isArray(v)) {
    writeLength(v.length, out, 0x90, 0xdc, 0xdd);
    for (const x of v) write(x, out);
    return;
  }
  if (typeof v === "object") {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) throw new Error("not a plain object");
    const entries = Object.entries(v as Record<string, unknown>);
    writeLength(entries.length, out, 0x80, 0xde, 0xdf);
    for (const [k, x] of entries) {
      writeString(k, out);
      write(x, out);
    }
    return;
  }
  throw new Error(`cannot write a ${typeof v}`);
}

function writeLength(n: number, out: number[], fix: number, t16: number, t32: number): void {
  if (n < 16) out.push(fix | n);
  else if (n < 0x10000) out.push(t16, n >> 8, n & 0xff);
  else out.push(t32, ...be(n, 4));
}

function be(n: number | bigint, bytes: number): number[] {
  let b = BigInt.asUintN(bytes * 8, BigInt(n));
  const r: number[] = [];
  for (let i = 0; i < bytes; i++) {
    r.unshift(Number(b & 0xffn));
    b >>= 8n;
  }
  return r;
}

function writeNumber(n: number, out: number[]): void {
  if (!Number.isSafeInteger(n) || Object.is(n, -0)) {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, n);
    out.push(0xcb, ...new Uint8Array(view.buffer));
  } else if (n >= 0) {
    if (n < 128) out.push(n);
    else if (n < 0x100) out.push(0xcc, n);
    else if (n < 0x10000) out.push(0xcd, ...be(n, 2));
    else if (n < 0x100000000) out.push(0xce, ...be(n, 4));
    else out.push(0xcf, ...be(n, 8));
  } else {
    if (n >= -32) out.push(n & 0xff);
    else if (n >= -0x80) out.push(0xd0, ...be(n, 1));
    else if (n >= -0x8000) out.push(0xd1, ...be(n, 2));
    else if (n >= -0x80000000) out.push(0xd2, ...be(n, 4));
    else out.push(0xd3, ...be(n, 8));
  }
}

/** UTF-8 of each code point; a lone surrogate (which `for…of` yields alone) gets the same three-byte form. */
function wtf8(s: string): number[] {
  const r: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) r.push(c);
    else if (c < 0x800) r.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) r.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else r.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return r;
}

function writeString(s: string, out: number[]): void {
  const bytes = wtf8(s);
  const n = bytes.length;
  if (n < 32) out.push(0xa0 | n);
  else if (n < 0x100) out.push(0xd9, n);
  else if (n < 0x10000) out.push(0xda, n >> 8, n & 0xff);
  else out.push(0xdb, ...be(n, 4));
  for (const b of bytes) out.push(b);
}
