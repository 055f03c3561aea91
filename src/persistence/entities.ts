/** MikroORM entity schemas of the write side: snapshots, event log, outbox, idempotency keys, e-mail index. */
import { EntitySchema } from "@mikro-orm/core";

/** The latest state of one aggregate instance. */
export interface SnapshotRow {
  aggregate_type: string;
  aggregate_id: string;
  version: number;
  /** The version the last writer started from: the optimistic check of the batched upsert. */
  base_version: number;
  state: string;
  updated_on: string;
}

/** One stored event: the append-only audit and replay log. */
export interface EventRow {
  seq: number;
  event_id: string;
  event_type: string;
  event_version: number;
  occurred_on: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: number;
  correlation_id: string;
  causation_id: string | null;
  payload: string;
}

/** An event waiting to reach JetStream; deleted once JetStream has acknowledged it. */
export interface OutboxRow {
  seq: number;
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: number;
  subject: string;
  event_type: string;
  event_version: number;
  body: Buffer;
  /**
   * The aggregate's partition: each relay reads and publishes only the partitions its instance holds.
   * Null only on rows written before the column existed, until a relay that reads some partitions only fills it in.
   */
  partition_no: number | null;
  /** The W3C trace context of the command that caused the event, for its JetStream headers; null when it had none. */
  traceparent: string | null;
  tracestate: string | null;
}

/** A remembered idempotency key with the reply of its first success. */
export interface IdempotencyRow {
  aggregate_type: string;
  aggregate_id: string;
  key: string;
  fingerprint: string;
  reply: string;
  created_on: string;
}

/** Which user holds an e-mail address: makes addresses unique across users. */
export interface UserEmailRow {
  email: string;
  user_id: string;
}

/** A durable timer: at `due_at` the runtime runs the aggregate's `kind` operation, also after downtime. */
export interface TimerRow {
  aggregate_type: string;
  aggregate_id: string;
  kind: string;
  due_at: string;
  /** The aggregate's partition: only its owner fires the timer. Null only on rows older than the column, until a poll of some partitions only fills it in. */
  partition_no: number | null;
}

/** Snapshot table. */
export const SnapshotSchema = new EntitySchema<SnapshotRow>({
  name: "Snapshot",
  tableName: "nerve_snapshots",
  properties: {
    aggregate_type: { type: "string", length: 32, primary: true, fieldName: "aggregate_type" },
    aggregate_id: { type: "string", length: 64, primary: true, fieldName: "aggregate_id" },
    version: { type: "integer", fieldName: "version" },
    base_version: { type: "integer", fieldName: "base_version" },
    state: { type: "text", fieldName: "state" },
    updated_on: { type: "string", length: 32, fieldName: "updated_on" },
  },
});

/** The databases Nerve runs on. */
export type Dialect = "sqlite" | "postgresql";

/**
 * The event log's and the outbox's sequence column: `bigserial` on PostgreSQL; on SQLite `integer`,
 * the 64-bit rowid alias that `bigint` also becomes there. Declared as `bigint` on SQLite, MikroORM
 * read the table back as `integer`, saw a difference and rebuilt both tables (copying every
 * event) at each start.
 */
function seqColumn(dialect: Dialect) {
  return { type: dialect === "sqlite" ? "integer" : "bigint", primary: true, autoincrement: true, fieldName: "seq" } as const;
}

/** Event log table. */
const eventSchema = (dialect: Dialect) =>
  new EntitySchema<EventRow>({
    name: "EventRecord",
    tableName: "nerve_events",
    properties: {
      seq: seqColumn(dialect),
      event_id: { type: "string", length: 36, unique: true, fieldName: "event_id" },
      event_type: { type: "string", length: 64, fieldName: "event_type" },
      event_version: { type: "integer", fieldName: "event_version" },
      occurred_on: { type: "string", length: 32, fieldName: "occurred_on" },
      aggregate_type: { type: "string", length: 32, fieldName: "aggregate_type" },
      aggregate_id: { type: "string", length: 64, fieldName: "aggregate_id" },
      aggregate_version: { type: "integer", fieldName: "aggregate_version" },
      correlation_id: { type: "string", length: 128, fieldName: "correlation_id" },
      causation_id: { type: "string", length: 128, nullable: true, fieldName: "causation_id" },
      payload: { type: "text", fieldName: "payload" },
    },
    uniques: [{ name: "nerve_events_aggregate_version", properties: ["aggregate_type", "aggregate_id", "aggregate_version"] }],
  });

/**
 * The partition column of the outbox and the timers. Nullable so that opening a database made before
 * it existed is a plain `alter table … add column` (SQLite would otherwise rebuild the table). Reads
 * of every partition (one instance: always on SQLite) take a null as the id's partition; the rows that
 * predate the column are filled in once, before the first read of some partitions only.
 */
const partitionColumn = { type: "integer", nullable: true, fieldName: "partition_no" } as const;

/** Outbox table. */
const outboxSchema = (dialect: Dialect) =>
  new EntitySchema<OutboxRow>({
    name: "OutboxRecord",
    tableName: "nerve_outbox",
    properties: {
      seq: seqColumn(dialect),
      event_id: { type: "string", length: 36, fieldName: "event_id" },
      aggregate_type: { type: "string", length: 32, fieldName: "aggregate_type" },
      aggregate_id: { type: "string", length: 64, fieldName: "aggregate_id" },
      aggregate_version: { type: "integer", fieldName: "aggregate_version" },
      subject: { type: "string", length: 255, fieldName: "subject" },
      event_type: { type: "string", length: 64, fieldName: "event_type" },
      event_version: { type: "integer", fieldName: "event_version" },
      body: { type: "blob", fieldName: "body" },
      partition_no: partitionColumn,
      // Nullable for the same reason as the partition: an older database gains them by `add column`.
      traceparent: { type: "string", length: 64, nullable: true, fieldName: "traceparent" },
      tracestate: { type: "string", length: 512, nullable: true, fieldName: "tracestate" },
    },
    // A relay's scan of its partitions, in seq order.
    indexes: [{ name: "nerve_outbox_partition_seq", properties: ["partition_no", "seq"] }],
  });

/** Idempotency key table. */
export const IdempotencySchema = new EntitySchema<IdempotencyRow>({
  name: "IdempotencyKey",
  tableName: "nerve_idempotency",
  properties: {
    aggregate_type: { type: "string", length: 32, primary: true, fieldName: "aggregate_type" },
    aggregate_id: { type: "string", length: 64, primary: true, fieldName: "aggregate_id" },
    key: { type: "string", length: 128, primary: true, fieldName: "key" },
    fingerprint: { type: "string", length: 64, fieldName: "fingerprint" },
    reply: { type: "text", fieldName: "reply" },
    created_on: { type: "string", length: 32, index: true, fieldName: "created_on" },
  },
});

/** E-mail uniqueness table. */
export const UserEmailSchema = new EntitySchema<UserEmailRow>({
  name: "UserEmail",
  tableName: "user_emails",
  properties: {
    email: { type: "string", length: 254, primary: true, fieldName: "email" },
    user_id: { type: "string", length: 64, fieldName: "user_id" },
  },
});

/** Durable timer table. */
export const TimerSchema = new EntitySchema<TimerRow>({
  name: "Timer",
  tableName: "nerve_timers",
  properties: {
    aggregate_type: { type: "string", length: 32, primary: true, fieldName: "aggregate_type" },
    aggregate_id: { type: "string", length: 64, primary: true, fieldName: "aggregate_id" },
    kind: { type: "string", length: 32, primary: true, fieldName: "kind" },
    due_at: { type: "string", length: 32, index: true, fieldName: "due_at" },
    partition_no: partitionColumn,
  },
  // The owner's poll of its partitions' due timers.
  indexes: [{ name: "nerve_timers_partition_due", properties: ["partition_no", "due_at"] }],
});

/** Every entity of the write side, for `dialect`. */
export function writeSideEntities(dialect: Dialect): EntitySchema<any>[] {
  return [SnapshotSchema, eventSchema(dialect), outboxSchema(dialect), IdempotencySchema, UserEmailSchema, TimerSchema];
}
