/**
 * The live sockets and everything written to them. Frames for a socket are queued and written
 * together within a short flush window (one cork, one syscall). Each socket has a byte budget on
 * what uWS holds for it beyond the kernel's buffers (`getBufferedAmount`), and on the replies queued
 * for it: a socket that stays over the first without catching up, or goes over the second, is closed
 * with 4408 and, as the reason, the cursor of the last event frame written to it — the client reads
 * up to there, then resumes from it; nothing is skipped silently.
 */
import { CloseCodes } from "../../contracts/index.js";
import { encodeCursor } from "./cursor.js";
import type { EventLog, LogEntry } from "./event-log.js";
import type { GatewayMetrics } from "./metrics.js";
import type { WebSocket } from "./uws.js";

/** A connection's state (the uWS user data). */
export interface Conn {
  ws: WebSocket<Conn> | undefined;
  readonly userId: string;
  /** Token expiry, seconds since the epoch (a JWT NumericDate: may be fractional). */
  readonly exp: number;
  /** The `cursor` query parameter, when the client resumes. */
  readonly resume: string | undefined;
  /** Events up to this stream sequence are queued (or were in the welcome): never queue them again. */
  queuedSeq: number;
  /** The last cursor written to the socket; -1 before the first. */
  sentSeq: number;
  /**
   * Queued frames as triplets: frame; its stream time if a live event, minus its size in bytes if a reply
   * (counted in {@link replyBytes}), else 0 (a control frame, or an event replayed to a resume); cursor
   * sequence (-1 if none). Event frames are the event log's bytes, every other frame a string.
   */
  out: (string | Uint8Array | number)[] | undefined;
  /** uWS holds more than the budget for this socket: the hub writes nothing more to it until it drains. */
  full: boolean;
  /**
   * Since when (ms since the epoch) the socket has been behind: it went full and has not caught up
   * since (everything queued written, uWS within the budget); 0 while it keeps up. A drain that lets
   * only part of the queue out does not reset it.
   */
  behindSince: number;
  /** The session has started (welcome, or a resume's events, queued): replies go out as queued. */
  live: boolean;
  /** Replies to client frames received before the session started, held until it does, in order. */
  held: string[] | undefined;
  /**
   * Bytes of replies held or queued and not yet written. Unlike event frames (references to the event
   * log's), each is the socket's own memory, made as fast as the client sends: past the byte budget
   * the socket is closed with 4408.
   */
  replyBytes: number;
  /** Access records whose welcome view is newer than the stream head was: versions not to send again. */
  skip: Map<string, number> | undefined;
  /** When {@link skip} is dropped (ms since the epoch): by then those events have long been read. */
  skipUntil: number;
  inflight: number;
  closed: boolean;
}

/** Tuning of the hub. */
export interface HubOptions {
  /** Frames for one socket are written together within this window (ms). */
  flushMs: number;
  /**
   * Most bytes the hub lets uWS hold for a socket: past them it writes nothing more to it until it
   * drains, and holds what comes meanwhile (references to the event log's frames). Also the most bytes
   * of replies it holds or queues for a socket, unwritten, past which the socket is closed with 4408.
   */
  maxBufferedBytes: number;
  /**
   * A socket that stays behind this long (ms) — over {@link maxBufferedBytes} without catching up since,
   * however much it read meanwhile — cannot keep up: closed with 4408.
   */
  slowAfterMs: number;
}

/** Sockets by learner, the flush loop, slow-client and token-expiry closes. */
export class Hub {
  readonly all = new Set<Conn>();
  readonly #dirty = new Set<Conn>();
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  readonly #expiries = new Map<number, Set<Conn>>();
  #expNext = Math.floor(Date.now() / 1000);
  readonly #expTimer: NodeJS.Timeout;
  /** Sockets behind ({@link Conn.behindSince}), watched by the slow rule. */
  readonly #behind = new Set<Conn>();
  /** Open sockets by learner, for the cap on them (only learners with one or more). */
  readonly #perUser = new Map<string, number>();

  constructor(
    private readonly log: EventLog<Conn>,
    private readonly metrics: GatewayMetrics,
    private readonly opts: HubOptions,
  ) {
    this.#expTimer = setInterval(() => this.#expire(), 1000);
    this.#expTimer.unref();
  }

  /** Seconds of the expiry wheel that hold sockets (for tests: an empty one must not linger). */
  get expirySeconds(): number {
    return this.#expiries.size;
  }

  /** Open sockets of a learner. */
  socketsOf(userId: string): number {
    return this.#perUser.get(userId) ?? 0;
  }

  /** A socket opened: watch its token's expiry. */
  opened(c: Conn): void {
    this.all.add(c);
    this.#perUser.set(c.userId, this.socketsOf(c.userId) + 1);
    this.metrics.connections.set(this.all.size);
    const s = this.#expirySecond(c);
    let bucket = this.#expiries.get(s);
    if (!bucket) this.#expiries.set(s, (bucket = new Set()));
    bucket.add(c);
  }

  /** A socket closed (by either side): forget it. */
  closed(c: Conn): void {
    c.closed = true;
    c.ws = undefined;
    c.out = undefined;
    c.held = undefined;
    if (this.all.delete(c)) {
      const n = this.socketsOf(c.userId) - 1;
      if (n > 0) this.#perUser.set(c.userId, n);
      else this.#perUser.delete(c.userId);
    }
    this.#dirty.delete(c);
    if (this.#behind.delete(c)) this.metrics.full.set(this.#behind.size);
    const s = this.#expirySecond(c);
    const bucket = this.#expiries.get(s);
    // Else an empty set stays until its second comes: with tokens valid for hours, one per second of
    // exp that any closed socket had — memory that grows with connection churn.
    if (bucket?.delete(c) && bucket.size === 0) this.#expiries.delete(s);
    const l = this.log.learner(c.userId);
    if (l?.sockets) {
      l.sockets.delete(c);
      if (l.sockets.size === 0) l.sockets = undefined;
      this.log.release(c.userId);
    }
    this.metrics.connections.set(this.all.size);
  }

  /**
   * Starts live delivery to a socket, once its session's first frames are queued: every learner
   * event after `c.queuedSeq` is queued for it, and the replies held until now follow those frames.
   */
  attach(c: Conn): void {
    if (c.closed) return;
    const l = this.log.learner(c.userId, true);
    (l.sockets ??= new Set()).add(c);
    c.live = true;
    const held = c.held;
    if (!held) return;
    c.held = undefined;
    for (const frame of held) this.queue(c, frame, -Buffer.byteLength(frame));
  }

  /**
   * Queues a reply to a client frame. Before the session has started it is held instead: a client
   * that sends as soon as the socket opens still gets its welcome (or reset and welcome) first —
   * which waits for GetLearnerProgress — as CONTRACT.md §6 has it. Replies held or queued, unwritten,
   * count against the socket's byte budget: a client that floods frames before its welcome, or while
   * it does not read, is closed with 4408 as one that reads too slowly is, so that what the hub keeps
   * for it stays bounded (every frame gets a reply, however fast they come).
   */
  reply(c: Conn, frame: string): void {
    if (c.closed) return;
    const bytes = Buffer.byteLength(frame);
    if (c.replyBytes + bytes > this.opts.maxBufferedBytes) return this.closeSlow(c);
    c.replyBytes += bytes;
    if (c.live) return this.queue(c, frame, -bytes);
    (c.held ??= []).push(frame);
  }

  /** Queues a learner event for each of the learner's sockets; false when the learner has none. */
  deliver(e: LogEntry): boolean {
    const sockets = this.log.learner(e.userId)?.sockets;
    if (!sockets) return false;
    for (const c of sockets) this.queueEvent(c, e);
    return true;
  }

  /**
   * Queues one event frame unless the socket has it already. A `replayed` one (a resume's missed events,
   * stored minutes or hours ago) is not observed in the push latency, which is the live path's.
   */
  queueEvent(c: Conn, e: LogEntry, replayed = false): void {
    if (e.seq <= c.queuedSeq) return;
    c.queuedSeq = e.seq;
    if (c.skip !== undefined) {
      const known = c.skip.get(e.accessId);
      if (known !== undefined && e.version <= known) return;
      if (Date.now() > c.skipUntil) c.skip = undefined;
    }
    this.queue(c, e.frame, replayed ? 0 : e.at, e.seq);
  }

  /** Queues a frame; `at` as in {@link Conn.out}, `seq` the cursor it carries (-1 for none). */
  queue(c: Conn, frame: string | Uint8Array, at = 0, seq = -1): void {
    if (c.closed) return;
    (c.out ??= []).push(frame, at, seq);
    // A full socket is written again at its drain.
    if (!c.full) this.#schedule(c);
  }

  #schedule(c: Conn): void {
    this.#dirty.add(c);
    if (this.#timer === undefined) {
      this.#timer = this.opts.flushMs > 0 ? setTimeout(() => this.flush(), this.opts.flushMs) : setImmediate(() => this.flush());
    }
  }

  /**
   * Writes the queued frames now, to each socket until uWS holds more than the budget for it. What is
   * left stays queued until uWS's drain: a burst larger than the budget (a resume after hours away, a
   * welcome with many records) reaches a client that reads, however small its network's first window.
   * Only a socket that stays behind for `slowAfterMs` is closed as too slow.
   */
  flush(): void {
    this.#timer = undefined;
    const now = Date.now();
    const counts = { event: 0, welcome: 0, ack: 0, reset: 0 };
    let replayed = 0;
    const latency = this.metrics.pushLatency;
    const budget = this.opts.maxBufferedBytes;
    for (const c of this.#dirty) {
      const ws = c.ws;
      const out = c.out;
      if (c.closed || !ws || !out || c.full) continue;
      c.out = undefined;
      let dropped = false;
      let i = 0;
      const write = () => {
        // uWS's buffer is asked before the first frame, then after a send it had to buffer and every 16th
        // (a native call per frame would cost the flood a few percent of its CPU per frame). send()
        // returns 1 when the frame went out whole, 0 when uWS buffered (some of) it, 2 when it dropped it.
        let ask = true;
        for (let n = 1; i < out.length; i += 3, n++) {
          if ((ask || (n & 15) === 0) && ws.getBufferedAmount() > budget) return;
          const frame = out[i] as string | Uint8Array;
          const sent = ws.send(frame, false, false);
          if (sent === 2) {
            dropped = true;
            return;
          }
          ask = sent === 0;
          const at = out[i + 1] as number;
          const seq = out[i + 2] as number;
          if (seq >= 0) c.sentSeq = seq;
          if (at > 0) {
            counts.event++;
            latency.observe(Math.max(0, now - at) / 1000);
          } else if (typeof frame !== "string") {
            counts.event++;
            replayed++;
          } else {
            c.replyBytes += at; // minus a reply's size, else 0
            counts[frameType(frame as string)]++;
          }
        }
      };
      // One frame is one write anyway; several are corked into one.
      if (out.length > 3) ws.cork(write);
      else write();
      // uWS refused a frame (past its own maxBackpressure, far above the budget): the client gets the
      // close with its last cursor rather than a gap.
      if (dropped) this.closeSlow(c);
      else if (i < out.length || ws.getBufferedAmount() > budget) {
        c.out = i < out.length ? out.slice(i) : undefined;
        c.full = true;
        if (c.behindSince === 0) {
          c.behindSince = now;
          this.#behind.add(c);
          this.metrics.full.set(this.#behind.size);
        }
      } else this.#caughtUp(c);
    }
    this.#dirty.clear();
    for (const [type, n] of Object.entries(counts)) if (n > 0) this.metrics.framesSent.inc({ type }, n);
    if (replayed > 0) this.metrics.framesReplayed.inc(replayed);
  }

  /**
   * uWS's drain: a socket's buffer went down. Once within the budget, what is queued for it goes out;
   * the socket has caught up only once all of that is written (a flush with nothing left over).
   */
  drained(c: Conn): void {
    if (!c.full || c.closed || !c.ws || c.ws.getBufferedAmount() > this.opts.maxBufferedBytes) return;
    c.full = false;
    if (c.out) this.#schedule(c);
    else this.#caughtUp(c);
  }

  // Everything queued is written and uWS is within the budget: the slow rule's clock stops.
  #caughtUp(c: Conn): void {
    if (c.behindSince === 0) return;
    c.behindSince = 0;
    this.#behind.delete(c);
    this.metrics.full.set(this.#behind.size);
  }

  /** Closes a socket that cannot keep up, with 4408 and the last cursor written to it. */
  closeSlow(c: Conn): void {
    if (c.closed || !c.ws) return;
    this.metrics.closes.inc({ reason: "slow" });
    c.ws.end(CloseCodes.TooSlow, c.sentSeq >= 0 ? encodeCursor(c.sentSeq) : "");
  }

  /** Closes every socket (code 1001) and stops the timers. */
  closeAll(code: number, reason: string): void {
    clearInterval(this.#expTimer);
    if (this.#timer !== undefined) this.flush();
    for (const c of [...this.all]) c.ws?.end(code, reason);
  }

  // The wheel's second a socket is filed under. `exp` may be fractional (a JWT NumericDate may be, and
  // jose accepts it) while the wheel only visits whole seconds: the whole second at or after it, so
  // the socket is never closed before its token expires, nor filed where no sweep looks. Until that
  // bucket is swept this gives the same second at close as at open (#expNext cannot pass it).
  #expirySecond(c: Conn): number {
    return Math.max(Math.ceil(c.exp), this.#expNext);
  }

  // Sockets whose token expired are closed with 4401; a 1 s wheel instead of a timer per socket.
  #expire(): void {
    // Sockets behind for too long cannot keep up (checked on the same 1 s tick).
    const slowBefore = Date.now() - this.opts.slowAfterMs;
    for (const c of this.#behind) if (c.behindSince < slowBefore) this.closeSlow(c);
    const now = Math.floor(Date.now() / 1000);
    for (; this.#expNext <= now; this.#expNext++) {
      const bucket = this.#expiries.get(this.#expNext);
      if (!bucket) continue;
      this.#expiries.delete(this.#expNext);
      for (const c of bucket) {
        if (c.closed || !c.ws) continue;
        this.metrics.closes.inc({ reason: "token_expired" });
        c.ws.end(CloseCodes.Unauthorized, "token expired");
      }
    }
  }
}

// Control frames are strings serialised with `type` first: the character after `{"type":"` tells them apart.
function frameType(frame: string): "welcome" | "ack" | "reset" | "event" {
  switch (frame.charCodeAt(9)) {
    case 119:
      return "welcome";
    case 97:
      return "ack";
    case 114:
      return "reset";
    default:
      return "event";
  }
}
