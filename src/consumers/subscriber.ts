/** What a subscribing context is: a durable consumer with a read model (projection) or commands (process manager). */
import type { EntitySchema } from "@mikro-orm/core";
import type { ConsumerName, Context, EnvelopeBase, EventType } from "../../contracts/index.js";

/** Runs SQL inside the consumer's transaction. */
export interface Tx {
  /** Runs one statement; `all` returns rows, `get` one row, `run` nothing useful. */
  execute<T = any>(sql: string, params?: unknown[], method?: "all" | "get" | "run"): Promise<T>;
  /** The database's dialect, for the rare statement that differs. */
  readonly dialect: "sqlite" | "postgresql";
}

/** A subscribing context's definition. */
export interface Subscriber {
  /** The durable consumer's name (one per stream it reads, all with this name). */
  readonly name: ConsumerName | (string & {});
  /** The event types it handles, by the context that publishes them; every other event is acked and skipped. */
  readonly handles: Partial<Record<Context, readonly EventType[]>>;
  /** Read-model tables, created by MikroORM with the rest of the schema. */
  readonly entities?: EntitySchema<any>[];
  /**
   * Extra DDL MikroORM cannot express (an FTS5 table, trigram indexes); idempotent. It runs at start within
   * Database.schemaChange: on PostgreSQL inside that transaction, under the schema's advisory lock.
   */
  setup?(tx: Tx): Promise<void>;
  /** Applies one event to the read model, inside the transaction that also records it as handled. */
  apply?(event: EnvelopeBase, tx: Tx): Promise<void>;
  /** Reacts with commands (a process manager), outside any transaction; must be idempotent by itself. */
  react?(event: EnvelopeBase): Promise<void>;
  /**
   * A process manager's order: events with the same key are handled one after another in stream order,
   * events with different keys at the same time (their commands go to different aggregates, each waiting
   * for its own commit). Without it, one event at a time.
   */
  orderKey?(event: EnvelopeBase): string;
  /** Empties the read model before a replay. */
  reset?(tx: Tx): Promise<void>;
  /**
   * `apply` only writes (`run`), never reads in its transaction, and its statements depend on nothing
   * but the event: on SQLite with the write worker, a batch's statements are then recorded on the main
   * thread and run in one message to the worker, beside the group commits, instead of one trip to the
   * driver's thread per statement while holding the one connection. A read from such an `apply` throws.
   */
  readonly writesOnly?: boolean;
  /**
   * A projection's `apply` changes nothing when it applies an event again — also after later events, in
   * whatever order — without its inbox row: version guards, rows keyed by ids derived from the event,
   * values that only go up. Its inbox rows are then forgotten once their events are older than
   * `NERVE_INBOX_RETENTION_DAYS` (InboxPrune): the inbox spares it the work of a redelivery, it is not
   * what keeps it right. Never on a process manager, whose `react` issues commands. Catalog, search and
   * learner-progress take a first application out of order too, the creation or grant included (an event
   * that finds no row makes a pending one, which the creation fills in); a projection that cannot must
   * have the events before it of its aggregate applied first, which the runner keeps (FloorAcks.holding,
   * for deliveries an earlier reader held).
   */
  readonly idempotentWithoutInbox?: boolean;
  /**
   * A projection whose statements are guarded by versions: whether its read model shows `event` once
   * `apply` has run in `tx` (it may read there) — what the event sets holds its values, or a later
   * event's that replaced them. False when a guard left the event out and the read model cannot tell
   * whether a later event replaced it (its row kept no version to compare). Asked by a dead
   * letter's retry (EventHandler.retry), which answers `stale` on false and commits nothing.
   */
  shows?(event: EnvelopeBase, tx: Tx): Promise<boolean>;
}

/** A consumer's failure that a retry cannot fix: it goes to the dead letters at once. */
export class PoisonEventError extends Error {
  override readonly name = "PoisonEventError";
}
