/**
 * Message headers whose wire block is written at once, for the publishes Nerve makes on every command:
 * the reply (Content-Type, Nerve-Instance) and the event's publish (outbox/event-headers.ts).
 *
 * nats-core's `headers()` object canonicalises and validates every name on every `set` (a split, a map,
 * a join, a regular expression), keeps each value in an array in a Map, and `encode()` writes the block
 * out through a TextEncoder: 6.0 µs of CPU per event's headers on the main thread against 0.6 µs here,
 * 1.3–2.4 µs per reply's against 0.02 µs, a reply's block being the same for every reply and encoded once
 * (`npm run bench:headers`).
 *
 * The object answers every MsgHdrs method as nats-core's does: any method but `encode` makes a nats-core
 * copy (never the case on the publish path) that from then on is the headers, changes included. Names
 * are the caller's constants; a value nats-core would refuse or change (a CR or LF, surrounding white
 * space) is for the caller to send through nats-core instead ({@link plainHeaderValue}).
 */
import { headers as natsHeaders, type Match, type MsgHdrs } from "@nats-io/nats-core";

/** Whether `v` can be written in a header block at all: no CR or LF (nats-core refuses one too). */
export function writableHeaderValue(v: string): boolean {
  return !/[\r\n]/.test(v);
}

/** Whether nats-core would store `v` as it is: no CR or LF (refused), no surrounding white space (trimmed). */
export function plainHeaderValue(v: string): boolean {
  return writableHeaderValue(v) && v.trim() === v;
}

/** The header block of `pairs` as on the wire: `NATS/1.0`, a line per header, an empty line (what nats-core's `encode` gives). */
export function headerBlock(pairs: readonly (readonly [string, string])[]): Uint8Array {
  let s = "NATS/1.0";
  for (const [k, v] of pairs) s += `\r\n${k}: ${v}`;
  return Buffer.from(`${s}\r\n\r\n`, "utf8");
}

/** Header names and values in wire order. */
type Pairs = readonly (readonly [string, string])[];

/**
 * Headers written as one block; `block`, when given, is that of `pairs` already encoded (shared, never written
 * to). `pairs` may be a function that makes them, for a caller that wrote the block itself: they are only
 * needed when something other than `encode` is asked.
 */
export class WireHeaders implements MsgHdrs {
  #pairs: Pairs | (() => Pairs);
  #block: Uint8Array | undefined;
  /** nats-core's copy, once anything but `encode` is asked (and from then on, the headers themselves). */
  #full: MsgHdrs | undefined;

  constructor(pairs: Pairs | (() => Pairs), block?: Uint8Array) {
    this.#pairs = pairs;
    this.#block = block;
  }

  /** The block as on the wire (nats-core's publish calls this, and nothing else, on the headers it is given). */
  encode(): Uint8Array {
    if (this.#full) return (this.#full as unknown as { encode(): Uint8Array }).encode();
    return (this.#block ??= headerBlock(this.#list()));
  }

  #list(): Pairs {
    if (typeof this.#pairs === "function") this.#pairs = this.#pairs();
    return this.#pairs;
  }

  #copy(): MsgHdrs {
    if (!this.#full) {
      const h = natsHeaders();
      for (const [k, v] of this.#list()) h.append(k, v);
      this.#full = h;
    }
    return this.#full;
  }

  get hasError(): boolean {
    return this.#copy().hasError;
  }
  get status(): string {
    return this.#copy().status;
  }
  get code(): number {
    return this.#copy().code;
  }
  get description(): string {
    return this.#copy().description;
  }
  get(k: string, match?: Match): string {
    return this.#copy().get(k, match);
  }
  set(k: string, v: string, match?: Match): void {
    this.#copy().set(k, v, match);
  }
  append(k: string, v: string, match?: Match): void {
    this.#copy().append(k, v, match);
  }
  has(k: string, match?: Match): boolean {
    return this.#copy().has(k, match);
  }
  keys(): string[] {
    return this.#copy().keys();
  }
  values(k: string, match?: Match): string[] {
    return this.#copy().values(k, match);
  }
  delete(k: string, match?: Match): void {
    this.#copy().delete(k, match);
  }
  last(k: string, match?: Match): string {
    return this.#copy().last(k, match);
  }
  [Symbol.iterator](): Iterator<[string, string[]]> {
    return this.#copy()[Symbol.iterator]();
  }
}
