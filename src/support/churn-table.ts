/**
 * A keyed table for entries that come and go all the time — requests in flight, handlers running —
 * kept in a dictionary-mode object instead of a `Map`.
 *
 * Why not a Map: every few inserts and deletes a Map rebuilds its hash table, and V8 leaves the
 * obsolete table pointing at its successor (for iterators) and at the entries it held. Once a full
 * collection has promoted a table to the old generation, every scavenge takes those old-to-new
 * pointers as roots, although the old table is dead: the next table survives and is promoted, and so
 * does whatever its entries reach (a request's promise, its message, its batch), and so on for good.
 * Measured with nats.js's table of requests in flight (a Map, patched to this in
 * patches/@nats-io+nats-core+3.4.0.patch) at 3,000 requests/s: after the first full collection 5–7 MB
 * survived each scavenge and was promoted (about 15 % of what was allocated; pauses of 20–30 ms); with
 * a dictionary object, under 0.2 MB. `npm run bench:churn-gc` shows it in isolation. A plain object's
 * hash table keeps no such link.
 *
 * Keys are strings or integers (`keys()` lists integer keys up to 2^32 - 2 in ascending order, before
 * the others); `undefined` is not a value.
 */
export class ChurnTable<V> {
  #entries = dictionary<V>();
  #size = 0;

  /** Entries in the table. */
  get size(): number {
    return this.#size;
  }

  get(key: string | number): V | undefined {
    return this.#entries[key];
  }

  has(key: string | number): boolean {
    return this.#entries[key] !== undefined;
  }

  set(key: string | number, value: V): void {
    if (value === undefined) throw new TypeError("a ChurnTable holds no undefined values");
    if (this.#entries[key] === undefined) this.#size++;
    this.#entries[key] = value;
  }

  /** Removes `key`'s entry; false when there was none. */
  delete(key: string | number): boolean {
    if (this.#entries[key] === undefined) return false;
    delete this.#entries[key];
    this.#size--;
    return true;
  }

  clear(): void {
    this.#entries = dictionary<V>();
    this.#size = 0;
  }

  /** The keys, as strings: integer keys first, ascending. */
  keys(): string[] {
    return Object.keys(this.#entries);
  }

  values(): V[] {
    return Object.values(this.#entries);
  }
}

/** An object that is a hash table from the start, for named and for integer keys alike. */
function dictionary<V>(): Record<string | number, V> {
  const d = Object.create(null) as Record<string | number, V>;
  // Two named properties, the first deleted: the object leaves fast mode for a hash table at once.
  d.a = undefined as V;
  d.b = undefined as V;
  delete d.a;
  delete d.b;
  // An integer key above 2^29 marks the elements as needing a hash table for good (V8's
  // requires_slow_elements): a plain array under sequential keys would grow with every key ever used.
  d[2 ** 30] = undefined as V;
  delete d[2 ** 30];
  return d;
}
