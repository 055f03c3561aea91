/**
 * What a socket gets when it opens. Without a cursor: a welcome — the learner's access records and
 * the cursor they reflect — then live events. With a cursor this gateway can serve: exactly the
 * learner's events after it, then live ones. With one it cannot (older than the buffered window,
 * malformed, or beyond the stream's end): `reset`, then a welcome.
 *
 * Welcome consistency: the records are the gateway's own (folded from the stream up to its head)
 * merged, by aggregate version, with GetLearnerProgress when answered. A record whose grant the
 * gateway never read (before its replay window) is partial: the query's record replaces it, or lies
 * under the fields the gateway's newer events set (record-fields.ts). The query may be ahead of the
 * head (it reads the aggregates, whose events may still be on their way to JetStream): those versions
 * are remembered for the socket and their events, when they arrive, are not sent again.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../log/index.js";
import { ACCESS_STREAM } from "./access-feed.js";
import { decodeCursor, encodeCursor } from "./cursor.js";
import type { AccessRecordView, EventLog } from "./event-log.js";
import type { Conn, Hub } from "./hub.js";
import type { ProgressQuery } from "./progress-query.js";
import { mergeRecord } from "./record-fields.js";

const RESET_FRAME = JSON.stringify({ type: "reset" });
/** How long a welcome's query versions are remembered to drop their late events. */
const SKIP_MS = 60_000;

/** Opens sessions on new sockets. */
export class Sessions {
  constructor(
    private readonly hub: Hub,
    private readonly log: EventLog<Conn>,
    private readonly query: ProgressQuery,
    private readonly jsm: JetStreamManager,
    private readonly logger: Logger,
  ) {}

  /** Starts a newly opened socket's session. */
  start(c: Conn): void {
    if (c.closed) return;
    if (c.resume === undefined) return this.#welcomeLater(c, false);
    const seq = decodeCursor(c.resume);
    if (seq === undefined) return this.#welcomeLater(c, true);
    if (seq > this.log.head) {
      void this.#resumeAhead(c, seq).catch((err) => this.#failed(c, err));
      return;
    }
    if (!this.#resume(c, seq)) this.#welcomeLater(c, true);
  }

  // Queues the events after `seq` and goes live; false when some of them may be gone.
  #resume(c: Conn, seq: number): boolean {
    const missed = this.log.since(c.userId, seq);
    if (!missed) return false;
    c.queuedSeq = seq;
    c.sentSeq = seq;
    for (const e of missed) this.hub.queueEvent(c, e, true);
    this.hub.attach(c);
    return true;
  }

  // A cursor from an instance that has read further: fine if the stream has it (we catch up).
  async #resumeAhead(c: Conn, seq: number): Promise<void> {
    const last = (await this.jsm.streams.info(ACCESS_STREAM)).state.last_seq;
    if (c.closed) return;
    if (seq > last || !this.#resume(c, seq)) await this.#welcome(c, true);
  }

  #welcomeLater(c: Conn, reset: boolean): void {
    void this.#welcome(c, reset).catch((err) => this.#failed(c, err));
  }

  async #welcome(c: Conn, reset: boolean): Promise<void> {
    const items = await this.query.get(c.userId);
    if (c.closed) return;
    // From here on nothing awaits: the records, the cursor and going live are one consistent step.
    const views = new Map<string, AccessRecordView>();
    for (const v of this.log.views(c.userId)) views.set(v.access_id, v);
    for (const item of items ?? []) {
      const mine = views.get(item.access_id);
      views.set(item.access_id, mergeRecord(mine, mine && this.log.knownFields(c.userId, item.access_id), item));
      if (mine && mine.version >= item.version) continue;
      (c.skip ??= new Map()).set(item.access_id, item.version);
      c.skipUntil = Date.now() + SKIP_MS;
    }
    const progress = [...views.values()].sort((a, b) => (a.course_id < b.course_id ? -1 : a.course_id > b.course_id ? 1 : 0));
    const cursor = this.log.head;
    c.queuedSeq = cursor;
    if (reset) this.hub.queue(c, RESET_FRAME);
    this.hub.queue(c, JSON.stringify({ type: "welcome", user_id: c.userId, cursor: encodeCursor(cursor), progress }), 0, cursor);
    this.hub.attach(c);
  }

  #failed(c: Conn, err: unknown): void {
    this.logger.error({ err, user_id: c.userId }, "session start failed");
    if (!c.closed) c.ws?.end(1011, "session start failed");
  }
}
