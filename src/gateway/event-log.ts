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

const EMPTY = Buffer.alloc(0);

/**
 * Bytes of one slab of frames. The frames of buffered events are bytes (the history off the V8 heap,
 * less to mark on each GC) copied into shared slabs, one off-heap allocation per 256 KiB of frames,
 * rather than a Buffer per event: that was one more object per buffered event for the collector to
 * copy out of the young generation and mark, plus its share of an 8 KiB pool (`npm run
 * bench:gateway-log`: 467 → 235 bytes of heap and 695 → 535 bytes off it per buffered event, with the
 * ids below). A slab is not zeroed: only the bytes written into it are ever viewed.
 */
const SLAB_BYTES = 256 * 1024;
/** The origin of {@link LogEntry}'s stored times: this module's load. */
const AT_BASE = Date.now();
/** A frame larger than this gets a buffer of its own rather than a slab's tail. */
const OWN_BUFFER_BYTES = SLAB_BYTES / 4;

/**
 * One buffered event, with its frame serialised once for every socket of the learner: `frame` is a
 * view of its bytes in a slab, made when asked for. A slab lives as long as one of its entries keeps
 * it (a dropped entry lets go of it at once); since the oldest events go first, the slabs do too.
 */
export class LogEntry implements EntryFields {
  dropped = false;
  // `at` in ms from AT_BASE: a small integer for 12 days either side of the start, which V8 keeps in the
  // object itself; ms since the epoch would be a number object of its own per buffered event.
  readonly #at: number;
  constructor(
    readonly seq: number,
    at: number,
    readonly userId: string,
    readonly accessId: string,
    readonly version: number,
    private slab: Buffer,
    private readonly offset: number,
    private readonly length: number,
  ) {
    this.#at = at - AT_BASE;
  }

  /** When JetStream stored it (ms since the epoch). */
  get at(): number {
    return this.#at + AT_BASE;
  }

  /** The `event` frame as UTF-8 JSON (empty once the entry is dropped). */
  get frame(): Uint8Array {
    return this.dropped ? EMPTY : this.slab.subarray(this.offset, this.offset + this.length);
  }

  /** Drops the entry: its frame is no longer served, and its slab no longer kept for it. */
  drop(): void {
    this.dropped = true;
    this.slab = EMPTY;
  }
}

/** Where frames are copied: the tail of the newest slab, a new one when it is full. */
class FrameSlabs {
  #slab = EMPTY;
  #used = 0;

  /** A log entry holding a copy of `frame`'s UTF-8 bytes. */
  entry(seq: number, at: number, userId: string, accessId: string, version: number, frame: string): LogEntry {
    // UTF-8 takes at most 3 bytes per UTF-16 unit: the exact length is only needed near the end.
    let bytes = frame.length * 3;
    if (this.#used + bytes > this.#slab.length) {
      bytes = Buffer.byteLength(frame);
      if (bytes > OWN_BUFFER_BYTES) return new LogEntry(seq, at, userId, accessId, version, Buffer.from(frame), 0, bytes);
      if (this.#used + bytes > this.#slab.length) {
        this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
        this.#used = 0;
      }
    }
    const offset = this.#used;
    const written = this.#slab.write(frame, offset);
    this.#used += written;
    return new LogEntry(seq, at, userId, accessId, version, this.#slab, offset, written);
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
  /** Buffered events from `start` on; the slots before it are emptied (undefined), compacted away in bulk. */
  entries: (LogEntry | undefined)[] = [];
  start = 0;
  droppedUpTo = 0;
  readonly views = new Map<string, AccessRecordView>();
  sockets: Set<S> | undefined;

  /** `userId` is the log's own copy (see {@link ownString}), which its entries share. */
  constructor(readonly userId: string) {}

  get size(): number {
    return this.entries.length - this.start;
  }

  oldest(): LogEntry | undefined {
    return this.entries[this.start];
  }

  shift(): LogEntry | undefined {
    const e = this.entries[this.start];
    if (e === undefined) return undefined;
    // Let go of the entry now: a learner with few events may not compact for a long time, and 50,000
    // learners each holding their dropped entries grew the heap by ~125 bytes per event past the budget.
    this.entries[this.start++] = undefined;
    if (this.start > 8 && this.start * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.start);
      this.start = 0;
    }
    return e;
  }
}

/** The buffered history of the access stream. */
export class EventLog<S = unknown> {
  /** Every stream message with this sequence or higher has been (or will be) seen. */
  floor = 1;
  /** The highest stream sequence processed. */
  head = 0;
  readonly #learners = new Map<string, Learner<S>>();
  #fifo: LogEntry[] = [];
  readonly #slabs = new FrameSlabs();
  #fifoStart = 0;
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
    const entry = this.#slabs.entry(fields.seq, fields.at, l.userId, accessId, fields.version, frame);
    const view = evolveView(before, event);
    if (view !== before) ownStrings(view, before);
    l.views.set(accessId, view);
    l.entries.push(entry);
    this.#fifo.push(entry);
    this.#total++;
    const { minAgeMs, minEvents, maxEvents } = this.retention;
    for (let o = l.oldest(); o && l.size > minEvents && o.at < now - minAgeMs; o = l.oldest()) {
      l.shift();
      l.droppedUpTo = o.seq;
      o.drop();
      this.#total--;
    }
    while (this.#total > maxEvents) this.#evictOldest();
    if (this.#fifo.length - this.#fifoStart > 2 * this.#total + 1024) {
      this.#fifo = this.#fifo.slice(this.#fifoStart).filter((e) => !e.dropped);
      this.#fifoStart = 0;
    }
    return entry;
  }

  // The oldest buffered event of the whole stream goes; cursors before it can no longer be served.
  #evictOldest(): void {
    const e = this.#fifo[this.#fifoStart++];
    if (e === undefined) return;
    if (this.#fifoStart > 1024 && this.#fifoStart * 2 > this.#fifo.length) {
      this.#fifo = this.#fifo.slice(this.#fifoStart);
      this.#fifoStart = 0;
    }
    if (e.dropped) return;
    const l = this.#learners.get(e.userId);
    l?.shift(); // it is that learner's oldest: older ones left the FIFO first or were dropped
    e.drop();
    this.#total--;
    this.floor = Math.max(this.floor, e.seq + 1);
    if (l) this.release(e.userId);
  }

  /** The learner's buffered events after `seq`, or undefined when events after it may be missing. */
  since(userId: string, seq: number): LogEntry[] | undefined {
    if (seq < this.floor - 1) return undefined;
    const l = this.#learners.get(userId);
    if (!l) return [];
    if (seq < l.droppedUpTo) return undefined;
    const { entries } = l;
    let lo = l.start;
    let hi = entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (entries[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return entries.slice(lo) as LogEntry[]; // from start on, every slot holds an entry
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
 * older than the replayed window starts from a plain active record with the event's ids; such a
 * view lacks `expires_at` (null) and earlier progress until a later event or the query says more.
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
  const next = accessRecordDecider.evolve(state, event) as AccessRecordView;
  // evolve always returns a new object; a view already handed out (to a welcome) is never changed.
  if (next === view) return { ...view, version: event.aggregate_version };
  next.version = event.aggregate_version;
  return next;
}
