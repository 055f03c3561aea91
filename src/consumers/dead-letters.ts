/** The dead-letter store: events a consumer gave up on, listable and retryable by an operator. */
import { EnvelopeBase, errors, upcasters } from "../../contracts/index.js";
import { INTEGER_COLUMN_MAX, exclusively, type Database, type ExclusiveWriter } from "../persistence/index.js";
import { isPoisonFailure } from "./transient.js";
import { DEAD_LETTER_PAGE, type DeadLetterPage } from "./dead-letter-page.js";
import type { DeadLetterRow } from "./entities.js";
import type { EventHandler, RetryOutcome } from "./event-handler.js";
import { withinBytes } from "../support/byte-budget.js";

/** A dead letter as an operator sees it. */
export type DeadLetter = Omit<DeadLetterRow, "envelope"> & {
  envelope: unknown;
  /** Set when the letter alone would not fit in a page: its envelope (null here) took this many bytes as JSON. */
  envelope_omitted_bytes?: number;
};

export { DEAD_LETTER_PAGE, type DeadLetterPage } from "./dead-letter-page.js";

/**
 * Reads and writes the dead letters. Its writes are on the main connection: beside the SQLite write worker
 * they go through `writer`'s exclusive turn, so the main thread never waits for the worker's lock in SQLite.
 */
export class DeadLetters {
  constructor(
    private readonly db: Database,
    private readonly writer?: ExclusiveWriter,
  ) {}

  /** Stores a dead letter; its reason is made storable (a failure's message may quote the bad input). */
  async add(row: Omit<DeadLetterRow, "id" | "created_on">): Promise<void> {
    await exclusively(this.writer, () =>
      this.db.execute(
        "insert into consumer_dead_letters (consumer, stream, stream_seq, event_id, event_type, envelope, reason, attempts, created_on) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row.consumer, row.stream, row.stream_seq, row.event_id, row.event_type, row.envelope, storableText(row.reason.slice(0, 4000)), row.attempts, new Date().toISOString()],
        "run",
      ),
    );
  }

  /** How many dead letters each consumer has (those with none are absent). */
  async countByConsumer(): Promise<Map<string, number>> {
    const rows = await this.db.query<{ consumer: string; n: number }[]>("select consumer, count(*) as n from consumer_dead_letters group by consumer");
    return new Map(rows.map((r) => [r.consumer, Number(r.n)]));
  }

  /** Every dead letter, oldest first, optionally of one consumer: {@link page} after page. */
  async list(consumer?: string): Promise<DeadLetter[]> {
    const letters: DeadLetter[] = [];
    for (let after: number | null = 0; after !== null; ) {
      const p: DeadLetterPage = await this.page({ consumer, after, limit: DEAD_LETTER_PAGE.maxLimit });
      letters.push(...p.items);
      after = p.next;
    }
    return letters;
  }

  /**
   * The dead letters after id `after`, oldest first, optionally of one consumer (read as a query: on SQLite,
   * off the main thread): at most `limit`, and no more than {@link DEAD_LETTER_PAGE}.maxBytes of JSON but at
   * least one.
   */
  async page(opts: { consumer?: string | undefined; after?: number; limit?: number } = {}): Promise<DeadLetterPage> {
    const limit = Math.min(opts.limit ?? DEAD_LETTER_PAGE.defaultLimit, DEAD_LETTER_PAGE.maxLimit);
    // Past the id column's range there is none (and PostgreSQL refuses to compare with it).
    const after = Math.min(opts.after ?? 0, INTEGER_COLUMN_MAX);
    const rows = await this.db.query<DeadLetterRow[]>(
      opts.consumer === undefined
        ? "select * from consumer_dead_letters where id > ? order by id limit ?"
        : "select * from consumer_dead_letters where consumer = ? and id > ? order by id limit ?",
      opts.consumer === undefined ? [after, limit + 1] : [opts.consumer, after, limit + 1],
    );
    const items = withinBytes(
      rows.slice(0, limit).map((r) => fitting(letterOf(r), r)),
      DEAD_LETTER_PAGE.maxBytes,
    );
    const more = items.length < rows.length;
    return { items, next: more ? items.at(-1)!.id : null };
  }

  /** The consumer of dead letter `id`, or undefined when there is no such letter (none past the id column's range). */
  async consumerOf(id: number): Promise<string | undefined> {
    if (id > INTEGER_COLUMN_MAX) return undefined;
    const row = await this.db.query<{ consumer: string } | undefined>("select consumer from consumer_dead_letters where id = ?", [id], "get");
    return row?.consumer;
  }

  /**
   * Runs a dead letter through its consumer again; on success it leaves the store. `stale` (the consumer's
   * read model can no longer take the event: EventHandler.retry) changes nothing and keeps the letter.
   */
  async retry(id: number, handlers: Map<string, EventHandler>): Promise<RetryOutcome> {
    const row = id > INTEGER_COLUMN_MAX ? undefined : await this.db.execute<any>("select * from consumer_dead_letters where id = ?", [id], "get");
    if (!row) throw errors.notFound(`no dead letter ${id}`);
    const handler = handlers.get(row.consumer);
    if (!handler) throw errors.notFound(`dead letter ${id} is of consumer ${row.consumer}, which this service does not run`);
    const parsed = EnvelopeBase.safeParse(row.envelope ? JSON.parse(row.envelope) : null);
    if (!parsed.success) throw errors.ruleViolated(`dead letter ${id} holds no valid event: it cannot be retried`);
    // A letter parked before its event type's current version is upcast as the stream's readers do.
    const outcome = await handler.retry(upcasters.upcast(parsed.data)).catch((err: unknown) => {
      // The event itself breaks the contract, or holds a number its read model cannot: no retry mends it.
      // (Was `internal` with an error logged, and a number out of range blamed on the request.)
      if (isPoisonFailure(err)) throw errors.ruleViolated(`dead letter ${id} cannot be applied: ${String((err as Error).message)}`);
      throw err;
    });
    if (outcome === "stale") return outcome;
    await exclusively(this.writer, () => this.db.execute("delete from consumer_dead_letters where id = ?", [id], "run"));
    return outcome;
  }
}

/** More than a letter's other fields take as JSON (ids, names, a timestamp, the keys). */
const FIELDS_BYTES = 1024;

/** Most bytes of a letter's `reason` in a page once the letter had to lose its envelope to fit. */
const REASON_BYTES = 8 * 1024;

/**
 * A letter as a page can carry it. One that would not fit in a page alone (a huge event, whose control
 * characters take six bytes each as JSON) is listed without its envelope, and its reason cut to 8 KiB: it
 * was listed whole, the page's reply went over the server's max_payload, and every listing from the start
 * answered `internal` for good. Its id still serves `retry-dead-letter`.
 */
function fitting(letter: DeadLetter, stored: DeadLetterRow): DeadLetter {
  // The stored texts (the envelope as JSON) far under a page: the letter fits, without serialising it here
  // (withinBytes does, once); near it, the letter is measured as it goes out.
  if (Buffer.byteLength(stored.envelope ?? "") + Buffer.byteLength(stored.reason) + FIELDS_BYTES <= DEAD_LETTER_PAGE.maxBytes) return letter;
  if (Buffer.byteLength(JSON.stringify(letter)) <= DEAD_LETTER_PAGE.maxBytes) return letter;
  const reason = Buffer.byteLength(letter.reason) > REASON_BYTES ? `${Buffer.from(letter.reason).subarray(0, REASON_BYTES).toString().replace(/\uFFFD$/u, "")}… (cut)` : letter.reason;
  return { ...letter, reason, envelope: null, envelope_omitted_bytes: Buffer.byteLength(JSON.stringify(letter.envelope)) };
}

function letterOf(r: DeadLetterRow): DeadLetter {
  return { ...r, id: Number(r.id), stream_seq: Number(r.stream_seq), envelope: r.envelope ? JSON.parse(r.envelope) : null };
}

/** Text every database stores: U+0000 (PostgreSQL refuses it) written as `\u0000`, a lone surrogate as U+FFFD. */
export function storableText(s: string): string {
  return s.replace(/\u0000/g, "\\u0000").replace(/\p{Cs}/gu, "\uFFFD");
}
