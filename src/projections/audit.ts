/** `audit`: an audit record for every revoked or expired access (CONTRACT.md §4); History itself reads the event log. */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers } from "../../contracts/index.js";
import type { Subscriber } from "../consumers/index.js";
import { typedEvent } from "./typed-event.js";

/** One audit record; its id is the event's. */
export interface AuditRecordRow {
  audit_id: string;
  event_type: string;
  access_id: string;
  user_id: string;
  course_id: string;
  /** The revocation's reason, or the moment the access expired. */
  detail: string;
  occurred_on: string;
  correlation_id: string;
  causation_id: string | null;
}

/** Audit record table. */
export const AuditRecordSchema = new EntitySchema<AuditRecordRow>({
  name: "AuditRecord",
  tableName: "audit_records",
  properties: {
    audit_id: { type: "string", length: 36, primary: true, fieldName: "audit_id" },
    event_type: { type: "string", length: 64, fieldName: "event_type" },
    access_id: { type: "string", length: 36, index: true, fieldName: "access_id" },
    user_id: { type: "string", length: 64, index: true, fieldName: "user_id" },
    course_id: { type: "string", length: 64, fieldName: "course_id" },
    detail: { type: "text", fieldName: "detail" },
    occurred_on: { type: "string", length: 32, fieldName: "occurred_on" },
    correlation_id: { type: "string", length: 128, fieldName: "correlation_id" },
    causation_id: { type: "string", length: 128, nullable: true, fieldName: "causation_id" },
  },
});

/** The audit projection: AccessRevoked and AccessExpired → audit records, with their causal chain. */
export function audit(): Subscriber {
  return {
    name: Consumers.Audit,
    handles: { access: ["AccessRevoked", "AccessExpired"] },
    entities: [AuditRecordSchema],
    // Each event is one insert or guarded update, whatever the read model holds.
    writesOnly: true,
    // A record's id is its event's: `on conflict do nothing`.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (e.event_type !== "AccessRevoked" && e.event_type !== "AccessExpired") return;
      const detail = e.event_type === "AccessRevoked" ? e.payload.reason : e.payload.expired_at;
      await tx.execute(
        "insert into audit_records (audit_id, event_type, access_id, user_id, course_id, detail, occurred_on, correlation_id, causation_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (audit_id) do nothing",
        [e.event_id, e.event_type, e.payload.access_id, e.payload.user_id, e.payload.course_id, detail, e.occurred_on, e.correlation_id, e.causation_id],
        "run",
      );
    },
    async reset(tx) {
      await tx.execute("delete from audit_records", [], "run");
    },
  };
}
