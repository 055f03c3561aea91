/**
 * Counts event ids (UUIDs) compactly: an open-addressing hash table over typed arrays, 17 bytes per
 * slot outside the JavaScript heap. A soak acknowledges millions of events; a Set of their strings
 * would hold millions of heap objects, and the load generator's growing garbage-collection pauses
 * would then show up in the reply latencies it measures.
 */

/** What a tally found once the stream has been read. */
export interface TallySummary {
  /** Distinct ids acknowledged by the service's replies. */
  acknowledged: number;
  /** Distinct ids read from the streams. */
  seen: number;
  /** Acknowledged ids never read from the streams. */
  missing: number;
  /** Ids read more than once (acknowledged or not). */
  duplicated: number;
}

const ACKED = 2;
const USED = 1;
const MAX_LOAD = 0.7;

/** A multiset of UUIDs: which were acknowledged, and how often each was seen. */
export class EventIdTally {
  #capacity: number;
  #size = 0;
  #keys: Uint32Array;
  #flags: Uint8Array;
  #seen: Uint8Array;
  readonly #word = new Uint32Array(4);

  constructor(initialCapacity = 1 << 16) {
    this.#capacity = 1 << Math.ceil(Math.log2(Math.max(16, initialCapacity)));
    this.#keys = new Uint32Array(this.#capacity * 4);
    this.#flags = new Uint8Array(this.#capacity);
    this.#seen = new Uint8Array(this.#capacity);
  }

  /** Distinct ids held. */
  get size(): number {
    return this.#size;
  }

  /** Records an id a command reply acknowledged. */
  ack(id: string): void {
    const s = this.#slot(id); // first: claiming a slot may grow (replace) the arrays
    this.#flags[s]! |= ACKED;
  }

  /** Counts one occurrence of an id in a stream (saturates at 255). */
  see(id: string): void {
    const s = this.#slot(id);
    if (this.#seen[s]! < 255) this.#seen[s]!++;
  }

  /** The counts so far. */
  summary(): TallySummary {
    const r: TallySummary = { acknowledged: 0, seen: 0, missing: 0, duplicated: 0 };
    for (let s = 0; s < this.#capacity; s++) {
      const f = this.#flags[s]!;
      if (!(f & USED)) continue;
      const n = this.#seen[s]!;
      if (f & ACKED) r.acknowledged++;
      if (n > 0) r.seen++;
      if (f & ACKED && n === 0) r.missing++;
      if (n > 1) r.duplicated++;
    }
    return r;
  }

  /** The slot of `id`, claimed if it is new. */
  #slot(id: string): number {
    const w = this.#parse(id);
    if (this.#size + 1 > this.#capacity * MAX_LOAD) this.#grow();
    const mask = this.#capacity - 1;
    for (let s = hash(w[0]!, w[1]!, w[2]!, w[3]!) & mask; ; s = (s + 1) & mask) {
      if (!(this.#flags[s]! & USED)) {
        this.#keys.set(w, s * 4);
        this.#flags[s] = USED;
        this.#size++;
        return s;
      }
      const k = s * 4;
      if (this.#keys[k] === w[0] && this.#keys[k + 1] === w[1] && this.#keys[k + 2] === w[2] && this.#keys[k + 3] === w[3]) return s;
    }
  }

  // The 32 hex digits of a canonical UUID as four 32-bit words; anything else is refused loudly.
  #parse(id: string): Uint32Array {
    const hex = id.length === 36 ? id.slice(0, 8) + id.slice(9, 13) + id.slice(14, 18) + id.slice(19, 23) + id.slice(24) : "";
    if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`not a UUID: ${JSON.stringify(id)}`);
    for (let i = 0; i < 4; i++) this.#word[i] = parseInt(hex.slice(i * 8, i * 8 + 8), 16);
    return this.#word;
  }

  #grow(): void {
    const [keys, flags, seen, old] = [this.#keys, this.#flags, this.#seen, this.#capacity];
    this.#capacity *= 2;
    this.#keys = new Uint32Array(this.#capacity * 4);
    this.#flags = new Uint8Array(this.#capacity);
    this.#seen = new Uint8Array(this.#capacity);
    const mask = this.#capacity - 1;
    for (let o = 0; o < old; o++) {
      if (!(flags[o]! & USED)) continue;
      const k = o * 4;
      let s = hash(keys[k]!, keys[k + 1]!, keys[k + 2]!, keys[k + 3]!) & mask;
      while (this.#flags[s]! & USED) s = (s + 1) & mask;
      this.#keys.set(keys.subarray(k, k + 4), s * 4);
      this.#flags[s] = flags[o]!;
      this.#seen[s] = seen[o]!;
    }
  }
}

// All four words matter: UUIDv7 ids of one millisecond share their first 48 bits.
function hash(a: number, b: number, c: number, d: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ b ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ c ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ d ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
