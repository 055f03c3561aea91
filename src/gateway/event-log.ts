/**
 * What the gateway remembers of EVENTS_ACCESS: per learner, a buffer of recent event frames (for
 * resumes) and the access records those events describe (for welcomes when no query answers).
 *
 * Retention: a learner's event is kept while it is among that learner's last `minEvents` events or
 * younger than `minAgeMs`, within a global budget of `maxEvents` buffered events; over the budget the
 * oldest events of the whole stream go first. Two floors say which cursors can still be served:
 * `floor` (every stream message from it on was seen; raised by the start-up replay window and by
 * global eviction) and a learner's `droppedUpTo` (its newest event dropped by its own retention).
 */
import type { z } from "zod";
import type { AccessView } from "../../contracts/index.js";
import { accessRecordDecider, type AccessRecordState } from "../../actors/access/index.js";
import type { RecordedEvent } from "../../actors/decider.js";
import { ALL_FIELDS, fieldsSetBy, type KnownFields } from "./record-fields.js";

/** A GetAccess result. */
export type AccessRecordView = z.infer<typeof AccessView>;

/** What the feed knows of a learner event before the log keeps it. */
export interface EntryFields {
  readonly seq: number;
  /** When JetStream stored it (ms since the epoch). */
  readonly at: number;
  readonly userId: string;
  readonly accessId: string;
  readonly version: number;
}

/**
 * One buffered event as handed out (to the hub, to a resume), with its frame serialised once for every
 * socket of the learner: a view of its UTF-8 JSON bytes in a slab. Made when asked for; the log itself
 * keeps no object per event (see {@link Slots}).
 */
export interface LogEntry extends EntryFields {
  readonly frame: Uint8Array;
}

/**
 * Bytes of one slab of frames. The frames of buffered events are bytes (the history off the V8 heap)
 * copied into shared slabs, one off-heap allocation per 256 KiB of frames, rather than a Buffer per event.
 * A slab is not zeroed: only the bytes written into it are ever viewed.
 */
const SLAB_BYTES = 256 * 1024;
/** A frame larger than this gets a buffer of its own rather than a slab's tail. */
const OWN_BUFFER_BYTES = SLAB_BYTES / 4;
/** Slots of a new log's table. */
const FIRST_CAPACITY = 1024;

/**
 * The buffered events by slot — their order of arrival — in typed arrays and arrays of shared
 * references (the learner, the record's id, the slab: one of each per learner, record or 256 KiB of
 * frames, never per event). Each buffered event used to be an object (with a Buffer and id copies of
 * its own) that the collector copied out of the young generation and marked on every major GC, the
 * log's biggest cost per event beyond what a plain `ws` server does (bench:gateway, README).
 *
 * Slots from `first` to `next` are in use: a slot whose slab is undefined was dropped (by its
 * learner's retention) and is skipped. A slab is freed once no slot (and no frame handed out) refers
 * to it; the oldest events go first, so the slabs do too. When the table is full it is rebuilt with
 * the buffered events only, renumbered from 0 in the same order, at twice their number (at least):
 * amortised, each event is copied a constant number of times.
 */
class Slots<S> {
  capacity: number;
  #mask: number;
  seq: Float64Array;
  at: Float64Array;
  version: Float64Array;
  offset: Int32Array;
  length: Int32Array;
  slab: (Buffer | undefined)[];
  learner: (Learner<S> | undefined)[];
  accessId: (string | undefined)[];
  first = 0;
  next = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#mask = capacity - 1;
    this.seq = new Float64Array(capacity);
    this.at = new Float64Array(capacity);
    this.version = new Float64Array(capacity);
    this.offset = new Int32Array(capacity);
    this.length = new Int32Array(capacity);
    this.slab = new Array<Buffer | undefined>(capacity).fill(undefined);
    this.learner = new Array<Learner<S> | undefined>(capacity).fill(undefined);
    this.accessId = new Array<string | undefined>(capacity).fill(undefined);
  }

  /** The table index of a slot. */
  index(slot: number): number {
    return slot & this.#mask;
  }

  get full(): boolean {
    return this.next - this.first === this.capacity;
  }

  /** Lets go of a slot's frame and references; it is skipped from now on. */
  drop(slot: number): void {
    const i = slot & this.#mask;
    this.slab[i] = undefined;
    this.learner[i] = undefined;
    this.accessId[i] = undefined;
  }

  dropped(slot: number): boolean {
    return this.slab[slot & this.#mask] === undefined;
  }

  /** The entry in a slot, as handed out. */
  entry(slot: number): LogEntry {
    const i = slot & this.#mask;
    const offset = this.offset[i]!;
    return { seq: this.seq[i]!, at: this.at[i]!, userId: this.learner[i]!.userId, accessId: this.accessId[i]!, version: this.version[i]!, frame: this.slab[i]!.subarray(offset, offset + this.length[i]!) };
  }
}

/**
 * Where frames are copied: the tail of the newest slab, a new one when it is full. Counts each slab's
 * bytes still referred to by a slot, so that slabs kept alive by a few survivors can be compacted: events
 * leave out of arrival order (a learner's own retention), and one surviving frame held its whole 256 KiB
 * slab — 252 buffered events (110 KiB of frames) held 46 MiB, and a day of busy learners' traffic left
 * ~100 MiB of such slabs a day under the same number of buffered events (gateway audit).
 */
class FrameSlabs {
  #slab = Buffer.alloc(0);
  #used = 0;
  /** Bytes of each slab still referred to by a slot (slabs only, not frames with a buffer of their own). */
  readonly #live = new Map<Buffer, number>();
  #liveBytes = 0;

  /** Copies `frame`'s UTF-8 bytes into table index `i` of `slots`. */
  put<S>(frame: string, slots: Slots<S>, i: number): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit: the exact length is only needed near the end.
    let bytes = frame.length * 3;
    if (this.#used + bytes > this.#slab.length) {
      bytes = Buffer.byteLength(frame);
      if (bytes > OWN_BUFFER_BYTES) {
        slots.slab[i] = Buffer.from(frame);
        slots.offset[i] = 0;
        slots.length[i] = bytes;
        return;
      }
      if (this.#used + bytes > this.#slab.length) this.#fresh();
    }
    const written = this.#slab.write(frame, this.#used);
    this.#keep(slots, i, written);
  }

  /** A slot's frame is no longer referred to (dropped, or moved). */
  release(slab: Buffer, bytes: number): void {
    const live = this.#live.get(slab);
    if (live === undefined) return;
    this.#liveBytes -= bytes;
    if (live - bytes > 0 || slab === this.#slab) this.#live.set(slab, live - bytes);
    else this.#live.delete(slab);
  }

  /** Bytes of the slabs holding buffered frames, and of those frames. */
  get bytes(): { held: number; live: number } {
    return { held: this.#live.size * SLAB_BYTES, live: this.#liveBytes };
  }

  /** Whether slabs held by few survivors take more than the survivors' bytes twice over (and 2 MiB). */
  get wasteful(): boolean {
    return this.#live.size * SLAB_BYTES > 2 * this.#liveBytes + 8 * SLAB_BYTES;
  }

  /**
   * Whether the frame at table index `i` lies in a slab half full or less (not the one being filled). While
   * the slabs are {@link wasteful} (under half full on average) some are: a compaction always frees some.
   */
  sparse<S>(slots: Slots<S>, i: number): boolean {
    const slab = slots.slab[i]!;
    if (slab === this.#slab) return false;
    const live = this.#live.get(slab);
    return live !== undefined && live <= SLAB_BYTES / 2;
  }

  /** Copies the frame at table index `i` to the slab being filled and lets go of the old place. */
  move<S>(slots: Slots<S>, i: number): void {
    const from = slots.slab[i]!;
    const offset = slots.offset[i]!;
    const bytes = slots.length[i]!;
    if (this.#used + bytes > this.#slab.length) this.#fresh();
    from.copy(this.#slab, this.#used, offset, offset + bytes);
    this.release(from, bytes);
    this.#keep(slots, i, bytes);
  }

  #fresh(): void {
    if (this.#live.get(this.#slab) === 0) this.#live.delete(this.#slab);
    this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    this.#used = 0;
    this.#live.set(this.#slab, 0);
  }

  #keep<S>(slots: Slots<S>, i: number, bytes: number): void {
    slots.slab[i] = this.#slab;
    slots.offset[i] = this.#used;
    slots.length[i] = bytes;
    this.#used += bytes;
    this.#live.set(this.#slab, (this.#live.get(this.#slab) ?? 0) + bytes);
    this.#liveBytes += bytes;
  }
}

/**
 * A copy of `s` that keeps nothing else alive. msgpackr decodes all of a message's strings at once
 * and hands out each one of 13 characters or more as a V8 *sliced* string of that block: an id kept
 * from a decoded event keeps every string of the event in memory (event id, timestamps, trace ids,
 * keys) for as long as the id lives. What the gateway keeps for minutes to hours goes through this.
 */
export function ownString<T extends string | null>(s: T): T {
  return (s !== null && s.length >= 13 ? (" " + s).slice(1) : s) as T;
}

/** How much history is kept. */
export interface RetentionOptions {
  /** Keep a learner's events at least this long (ms). */
  minAgeMs: number;
  /** Keep at least this many events per learner. */
  minEvents: number;
  /** Most events buffered over all learners (the memory bound). */
  maxEvents: number;
}

/** The access event types a learner sees. */
export const LEARNER_EVENT_TYPES = ["CourseAccessGranted", "AccessRevoked", "AccessExpired", "ProgressUpdated", "CourseCompleted"] as const;
/** One of {@link LEARNER_EVENT_TYPES}. */
export type LearnerEventType = (typeof LEARNER_EVENT_TYPES)[number];

/** A learner: buffered events, access records, and (kept by the hub) live sockets. */
export class Learner<S = unknown> {
  /** The slots of its buffered events from `start` on, in order; those before `start` are gone, compacted away in bulk. */
  slots: number[] = [];
  start = 0;
  droppedUpTo = 0;
  readonly views = new Map<string, AccessRecordView>();
  /** Records begun from a placeholder (see record-fields.ts), with the fields their events set. */
  partial: Map<string, KnownFields> | undefined;
  sockets: Set<S> | undefined;

  /** `userId` is the log's own copy (see {@link ownString}), which its entries share. */
  constructor(readonly userId: string) {}

  get size(): number {
    return this.slots.length - this.start;
  }

  /** The slot of its oldest buffered event, if any. */
  oldest(): number | undefined {
    return this.start < this.slots.length ? this.slots[this.start] : undefined;
  }

  /** Forgets its oldest buffered event; returns its slot. */
  shift(): number | undefined {
    if (this.start >= this.slots.length) return undefined;
    const slot = this.slots[this.start++]!;
    if (this.start > 8 && this.start * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.start);
      this.start = 0;
    }
    return slot;
  }
}

/** The buffered history of the access stream. */
export class EventLog<S = unknown> {
  /** Every stream message with this sequence or higher has been (or will be) seen. */
  floor = 1;
  /** The highest stream sequence processed. */
  head = 0;
  readonly #learners = new Map<string, Learner<S>>();
  #slots = new Slots<S>(FIRST_CAPACITY);
  readonly #slabs = new FrameSlabs();
  #total = 0;

  constructor(readonly retention: RetentionOptions) {}

  /** Events buffered over all learners. */
  get size(): number {
    return this.#total;
  }

  /** Learners known. */
  get learners(): number {
    return this.#learners.size;
  }

  /** The learner, created when asked to. */
  learner(userId: string, create: true): Learner<S>;
  learner(userId: string, create?: boolean): Learner<S> | undefined;
  learner(userId: string, create = false): Learner<S> | undefined {
    let l = this.#learners.get(userId);
    if (!l && create) {
      const id = ownString(userId);
      this.#learners.set(id, (l = new Learner<S>(id)));
    }
    return l;
  }

  /** Forgets a learner that has neither sockets nor buffered events. */
  release(userId: string): void {
    const l = this.#learners.get(userId);
    if (l && l.size === 0 && (l.sockets === undefined || l.sockets.size === 0)) this.#learners.delete(userId);
  }

  /**
   * Records one learner event (already validated) with its `event` frame, updating the learner's access
   * records; returns the entry kept.
   */
  append(fields: EntryFields, frame: string, event: RecordedEvent<LearnerEventType> & { aggregate_version: number }, now = Date.now()): LogEntry {
    const l = this.learner(fields.userId, true);
    const before = l.views.get(fields.accessId);
    // The entry's ids are the learner's and the view's own copies, one per learner and per record
    // rather than two per event; nothing of the decoded event stays alive (see ownString).
    const accessId = before !== undefined && before.access_id === fields.accessId ? before.access_id : ownString(fields.accessId);
    const view = evolveView(before, event);
    if (view !== before) {
      ownStrings(view, before);
      trackKnown(l, accessId, before, event);
    }
    l.views.set(accessId, view);
    if (this.#slots.full) this.#rebuild();
    const t = this.#slots;
    const slot = t.next++;
    const i = t.index(slot);
    t.seq[i] = fields.seq;
    t.at[i] = fields.at;
    t.version[i] = fields.version;
    t.learner[i] = l;
    t.accessId[i] = accessId;
    this.#slabs.put(frame, t, i);
    l.slots.push(slot);
    this.#total++;
    const entry = t.entry(slot);
    const { minAgeMs, minEvents, maxEvents } = this.retention;
    for (let o = l.oldest(); o !== undefined && l.size > minEvents && t.at[t.index(o)]! < now - minAgeMs; o = l.oldest()) {
      l.shift();
      l.droppedUpTo = t.seq[t.index(o)]!;
      this.#drop(o);
      this.#total--;
    }
    while (this.#total > maxEvents) this.#evictOldest();
    if (this.#slabs.wasteful) this.#compact();
    return entry;
  }

  // The oldest buffered event of the whole stream goes; cursors before it can no longer be served.
  #evictOldest(): void {
    const t = this.#slots;
    while (t.first < t.next && t.dropped(t.first)) t.first++;
    if (t.first === t.next) return;
    const slot = t.first++;
    const i = t.index(slot);
    const l = t.learner[i]!;
    l.shift(); // it is that learner's oldest: older ones were evicted first or dropped
    this.floor = Math.max(this.floor, t.seq[i]! + 1);
    this.#drop(slot);
    this.#total--;
    this.release(l.userId);
  }

  // Lets go of a slot, and of its frame's bytes in its slab.
  #drop(slot: number): void {
    const t = this.#slots;
    const i = t.index(slot);
    const slab = t.slab[i];
    if (slab) this.#slabs.release(slab, t.length[i]!);
    t.drop(slot);
  }

  /**
   * Moves the frames of slabs half full or less into the slab being filled, so that those slabs can be freed
   * (frames handed out keep theirs alive until they go). Run when the slabs hold more than twice their
   * frames' bytes (and 2 MiB): afterwards every slab left is over half full, so the next one waits for that
   * much waste again, and a frame is moved a constant number of times on average.
   */
  #compact(): void {
    const t = this.#slots;
    for (let slot = t.first; slot < t.next; slot++) {
      if (t.dropped(slot)) continue;
      const i = t.index(slot);
      if (this.#slabs.sparse(t, i)) this.#slabs.move(t, i);
    }
    this.compactions++;
  }

  /** Compactions of the frames' slabs since start. */
  compactions = 0;

  /** Bytes of the slabs that hold buffered frames, and of the frames in them (frames of a buffer of their own aside). */
  get slabBytes(): { held: number; live: number } {
    return this.#slabs.bytes;
  }

  // A full table: the buffered events move to a new one (at least twice their number), renumbered from 0.
  #rebuild(): void {
    const old = this.#slots;
    let capacity = FIRST_CAPACITY;
    while (capacity < 2 * this.#total + 2) capacity *= 2;
    const t = new Slots<S>(capacity);
    // The new slot of each old table index that holds an event.
    const moved = new Int32Array(old.capacity);
    for (let slot = old.first; slot < old.next; slot++) {
      if (old.dropped(slot)) continue;
      const i = old.index(slot);
      const j = t.next++;
      t.seq[j] = old.seq[i]!;
      t.at[j] = old.at[i]!;
      t.version[j] = old.version[i]!;
      t.offset[j] = old.offset[i]!;
      t.length[j] = old.length[i]!;
      t.slab[j] = old.slab[i];
      t.learner[j] = old.learner[i];
      t.accessId[j] = old.accessId[i];
      moved[i] = j;
    }
    for (const l of this.#learners.values()) {
      const slots = l.slots.slice(l.start);
      for (let k = 0; k < slots.length; k++) slots[k] = moved[old.index(slots[k]!)]!;
      l.slots = slots;
      l.start = 0;
    }
    this.#slots = t;
  }

  /** The learner's buffered events after `seq`, or undefined when events after it may be missing. */
  since(userId: string, seq: number): LogEntry[] | undefined {
    if (seq < this.floor - 1) return undefined;
    const l = this.#learners.get(userId);
    if (!l) return [];
    if (seq < l.droppedUpTo) return undefined;
    const t = this.#slots;
    const { slots } = l;
    let lo = l.start;
    let hi = slots.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (t.seq[t.index(slots[mid]!)]! <= seq) lo = mid + 1;
      else hi = mid;
    }
    const out: LogEntry[] = [];
    for (let k = lo; k < slots.length; k++) out.push(t.entry(slots[k]!));
    return out;
  }

  /**
   * Whether an access record already has this version: a repeat of an event JetStream no longer
   * deduplicates (published again after its duplicate window). Per (aggregate, version), which is
   * what `event_id` identifies for events of one aggregate.
   */
  isRepeat(userId: string, accessId: string, version: number): boolean {
    const v = this.#learners.get(userId)?.views.get(accessId)?.version;
    return v !== undefined && version <= v;
  }

  /** The learner's access records as of {@link head}. */
  views(userId: string): AccessRecordView[] {
    return [...(this.#learners.get(userId)?.views.values() ?? [])];
  }

  /**
   * The fields of an access record its events set, when the record was begun from a placeholder (its
   * grant not read: see record-fields.ts); undefined when every field is the record's own.
   */
  knownFields(userId: string, accessId: string): KnownFields | undefined {
    return this.#learners.get(userId)?.partial?.get(accessId);
  }
}

// A record whose first event read is not its grant (version 1) is partial: the fields its events set
// are counted until it has them all.
function trackKnown<S>(l: Learner<S>, accessId: string, before: AccessRecordView | undefined, event: RecordedEvent<LearnerEventType> & { aggregate_version: number }): void {
  let known: KnownFields;
  if (before === undefined) {
    if (event.event_type === "CourseAccessGranted" && event.aggregate_version === 1) return;
    known = fieldsSetBy(event.event_type);
  } else {
    const was = l.partial?.get(accessId);
    if (was === undefined) return;
    known = was | fieldsSetBy(event.event_type);
  }
  if (known === ALL_FIELDS) l.partial?.delete(accessId);
  else (l.partial ??= new Map()).set(accessId, known);
}

// A new view's strings come from the event that made it or from the view before, whose strings are
// copies already: a field equal to the view before's takes that copy (strings compare by value, so it
// may be the event's slice of the same text), any other string is copied (see ownString).
function ownStrings(view: AccessRecordView, before: AccessRecordView | undefined): void {
  const v = view as unknown as Record<string, unknown>;
  const b = before as unknown as Record<string, unknown> | undefined;
  for (const k in v) {
    const x = v[k];
    if (typeof x === "string") v[k] = b !== undefined && x === b[k] ? b[k] : ownString(x);
  }
}

/**
 * Applies an event to a record view with the aggregate's own `evolve`. A record whose grant is
 * older than the replayed window starts from a placeholder, a plain active record with the event's ids;
 * the log counts which fields its events set ({@link EventLog.knownFields}) and the welcome takes the
 * others from the query when it answers (record-fields.ts).
 */
export function evolveView(view: AccessRecordView | undefined, event: RecordedEvent<LearnerEventType> & { aggregate_version: number }): AccessRecordView {
  if (view && event.aggregate_version <= view.version) return view;
  const p = event.payload as { access_id: string; user_id: string; course_id: string };
  // A view is a state with a version: handed to evolve as it is, its `version` rides along in the copy
  // evolve makes, and is set on that copy (one object per event, not three).
  const state: AccessRecordState | null = view
    ? view
    : event.event_type === "CourseAccessGranted"
      ? null
      : { access_id: p.access_id, user_id: p.user_id, course_id: p.course_id, status: "active", progress: 0, completed: false, expires_at: null, order_id: null };
  let next = accessRecordDecider.evolve(state, event) as AccessRecordView;
  // A view is GetAccess's fields: a record paid for by two orders keeps the other in its state only.
  if ((next as AccessRecordState).paid_by !== undefined) {
    const { paid_by: _paidBy, ...fields } = next as AccessRecordView & Pick<AccessRecordState, "paid_by">;
    next = fields;
  }
  // evolve always returns a new object; a view already handed out (to a welcome) is never changed.
  if (next === view) return { ...view, version: event.aggregate_version };
  next.version = event.aggregate_version;
  return next;
}
