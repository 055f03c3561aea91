/** Tables shared by every consumer: the inbox of handled events and the dead letters. */
import { EntitySchema } from "@mikro-orm/core";

/** An event a consumer has handled: makes every consumer idempotent by event_id. */
export interface InboxRow {
  consumer: string;
  event_id: string;
  handled_on: string;
}

/** An event a consumer gave up on, with the reason. */
export interface DeadLetterRow {
  id: number;
  consumer: string;
  stream: string;
  stream_seq: number;
  event_id: string | null;
  event_type: string | null;
  envelope: string | null;
  reason: string;
  attempts: number;
  created_on: string;
}

/** Inbox table. */
export const InboxSchema = new EntitySchema<InboxRow>({
  name: "ConsumerInbox",
  tableName: "consumer_inbox",
  properties: {
    consumer: { type: "string", length: 64, primary: true, fieldName: "consumer" },
    event_id: { type: "string", length: 36, primary: true, fieldName: "event_id" },
    handled_on: { type: "string", length: 32, fieldName: "handled_on" },
  },
});

/** Dead-letter table. */
export const DeadLetterSchema = new EntitySchema<DeadLetterRow>({
  name: "DeadLetter",
  tableName: "consumer_dead_letters",
  properties: {
    id: { type: "integer", primary: true, autoincrement: true, fieldName: "id" },
    consumer: { type: "string", length: 64, index: true, fieldName: "consumer" },
    stream: { type: "string", length: 64, fieldName: "stream" },
    stream_seq: { type: "bigint", fieldName: "stream_seq" },
    event_id: { type: "string", length: 36, nullable: true, fieldName: "event_id" },
    event_type: { type: "string", length: 64, nullable: true, fieldName: "event_type" },
    envelope: { type: "text", nullable: true, fieldName: "envelope" },
    reason: { type: "text", fieldName: "reason" },
    attempts: { type: "integer", fieldName: "attempts" },
    created_on: { type: "string", length: 32, fieldName: "created_on" },
  },
});

/** Every shared consumer table. */
export const consumerEntities = [InboxSchema, DeadLetterSchema];
