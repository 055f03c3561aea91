/**
 * query.audit.History: an aggregate's events in order (CONTRACT.md §5), whole or in Nerve's pages. The
 * event log is read a slice at a time and no further than the answer can hold: read whole first, a history
 * of 8,000 events of 40 KB was 323 MB parsed and encoded before it was refused as too large for one reply
 * (RSS 1.8 GB), and a page of 12 such events read 1,001 rows. Each request now holds about one reply of
 * events; as many run at once as the query thread or PostgreSQL's query gate lets wait (64).
 */
import { HISTORY_PAGE, errors, upcasters, type EnvelopeBase, type QueryBody, type QueryResult } from "../../contracts/index.js";
import type { EventRow, Repository } from "../persistence/index.js";
import type { ReplyRoom } from "../support/byte-budget.js";

/** An event row as the contract's envelope; the event log keeps every event as written, so older versions are upcast here, as every reader does. */
function envelopeOf(r: EventRow): EnvelopeBase {
  return upcasters.upcast({
    event_id: r.event_id,
    event_type: r.event_type,
    event_version: Number(r.event_version),
    occurred_on: r.occurred_on,
    aggregate_type: r.aggregate_type as EnvelopeBase["aggregate_type"],
    aggregate_id: r.aggregate_id,
    aggregate_version: Number(r.aggregate_version),
    correlation_id: r.correlation_id,
    causation_id: r.causation_id,
    payload: JSON.parse(r.payload),
  });
}

/** Event sizes read per statement: two numbers a row, no payload. */
const SIZES_PER_READ = 1_000;

/**
 * What an envelope's JSON adds to its row's text (keys, quotes, punctuation; a digit per version): with the
 * bytes of {@link Repository.historySizes}, about an event's size as answered — how many rows to read.
 */
const ENVELOPE_BYTES =
  Buffer.byteLength(JSON.stringify({ event_id: "", event_type: "", event_version: 1, occurred_on: "", aggregate_type: "", aggregate_id: "", aggregate_version: 1, correlation_id: "", causation_id: "", payload: null })) -
  "null".length;

/** Events read by {@link readWithin}, their bytes, and why it stopped: no more events, `most` of them, or `budget` (the next did not fit). */
interface Read {
  events: EnvelopeBase[];
  bytes: number;
  stopped: "end" | "count" | "bytes";
}

/** What {@link readWithin} reads: after which version, how many events and bytes at most, each event measured by `size`. */
interface ReadBounds {
  after: number;
  most: number;
  budget: number;
  size: (event: EnvelopeBase) => number;
  /** The first event is taken whatever its size (a page holds one at least). */
  first: boolean;
}

/**
 * The events of an aggregate after `after`, in order, while they fit in `most` and `budget`. Each round
 * reads the next events' sizes (no payload), then the rows whose sizes fit in what is left and the one after
 * — the one that may not — and measures them as answered: what is read beyond the answer is about one event,
 * not the rest of the history. When the returned bytes are `budget`'s, they count the event that did not fit.
 */
async function readWithin(repo: Repository, type: string, id: string, b: ReadBounds): Promise<Read> {
  const events: EnvelopeBase[] = [];
  let bytes = 0;
  let after = b.after;
  for (;;) {
    const asked = Math.min(SIZES_PER_READ, b.most - events.length + 1);
    const sizes = await repo.historySizes(type, id, after, asked);
    let take = 0;
    for (let estimate = bytes; take < sizes.length && events.length + take < b.most; ) {
      estimate += sizes[take]!.bytes + ENVELOPE_BYTES;
      take++;
      if (estimate > b.budget) break;
    }
    if (take === 0) return { events, bytes, stopped: sizes.length === 0 ? "end" : "count" };
    const rows = await repo.history(type, id, { after, limit: take });
    for (const row of rows) {
      const event = envelopeOf(row);
      const size = b.size(event);
      if (bytes + size > b.budget && !(b.first && events.length === 0)) return { events, bytes: bytes + size, stopped: "bytes" };
      events.push(event);
      bytes += size;
    }
    // Every event read fit: the sizes said whether any follows.
    if (rows.length === 0 || (take === sizes.length && sizes.length < asked)) return { events, bytes, stopped: "end" };
    after = events.at(-1)!.aggregate_version;
  }
}

/** History: the whole history while one reply carries it (at most HISTORY_PAGE.maxUnpaged events); a page when `after_version` or `limit` is given. */
export function history(repo: Repository) {
  return async (b: QueryBody<"History">, room: ReplyRoom): Promise<QueryResult<"History">> => {
    const [type, id] = [b.aggregate_type, b.aggregate_id];
    if (b.after_version === undefined && b.limit === undefined) {
      if ((await repo.historyLength(type, id, HISTORY_PAGE.maxUnpaged + 1)) > HISTORY_PAGE.maxUnpaged) throw tooLong(type, id);
      // Measured in the reply's encoding, the events alone: once they pass the room, the answer cannot fit.
      const wrapper = room.bytesOf({ events: [] });
      const read = await readWithin(repo, type, id, { after: 0, most: HISTORY_PAGE.maxUnpaged, budget: room.resultBytes - wrapper, size: room.bytesOf, first: false });
      if (read.stopped === "bytes") throw room.tooLarge(wrapper + read.bytes);
      // Events written since the count.
      if (read.stopped === "count") throw tooLong(type, id);
      return { events: read.events };
    }
    // A page: at most `limit` events and HISTORY_PAGE.maxBytes of their JSON, one at least.
    const json = (e: EnvelopeBase) => Buffer.byteLength(JSON.stringify(e));
    const read = await readWithin(repo, type, id, { after: b.after_version ?? 0, most: b.limit ?? HISTORY_PAGE.defaultLimit, budget: HISTORY_PAGE.maxBytes, size: json, first: true });
    return { events: read.events, next_after_version: read.stopped === "end" ? null : read.events.at(-1)!.aggregate_version };
  };
}

function tooLong(type: string, id: string) {
  return errors.invalidRequest(`the history of ${type} ${id} holds more than ${HISTORY_PAGE.maxUnpaged} events: ask for it in pages (after_version, limit; each answer's next_after_version is where the next begins)`, {
    max_events: HISTORY_PAGE.maxUnpaged,
  });
}
