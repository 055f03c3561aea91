/** `security`: a security alert for every e-mail change (CONTRACT.md §4). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers } from "../../contracts/index.js";
import type { Subscriber } from "../consumers/index.js";
import { typedEvent } from "./typed-event.js";

/** One security alert; its id is the event's, so one event never raises two alerts. */
export interface SecurityAlertRow {
  alert_id: string;
  user_id: string;
  kind: string;
  old_email: string;
  new_email: string;
  correlation_id: string;
  occurred_on: string;
}

/** Security alert table. */
export const SecurityAlertSchema = new EntitySchema<SecurityAlertRow>({
  name: "SecurityAlert",
  tableName: "security_alerts",
  properties: {
    alert_id: { type: "string", length: 36, primary: true, fieldName: "alert_id" },
    user_id: { type: "string", length: 64, index: true, fieldName: "user_id" },
    kind: { type: "string", length: 32, fieldName: "kind" },
    old_email: { type: "string", length: 254, fieldName: "old_email" },
    new_email: { type: "string", length: 254, fieldName: "new_email" },
    correlation_id: { type: "string", length: 128, fieldName: "correlation_id" },
    occurred_on: { type: "string", length: 32, fieldName: "occurred_on" },
  },
});

/** The security projection: UserEmailChanged → an `email_changed` alert. */
export function security(): Subscriber {
  return {
    name: Consumers.Security,
    handles: { users: ["UserEmailChanged"] },
    entities: [SecurityAlertSchema],
    // Each event is one insert or guarded update, whatever the read model holds.
    writesOnly: true,
    // An alert's id is its event's: `on conflict do nothing`.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (e.event_type !== "UserEmailChanged") return;
      const { user_id, old_email, new_email } = e.payload;
      await tx.execute(
        "insert into security_alerts (alert_id, user_id, kind, old_email, new_email, correlation_id, occurred_on) values (?, ?, ?, ?, ?, ?, ?) on conflict (alert_id) do nothing",
        [e.event_id, user_id, "email_changed", old_email, new_email, e.correlation_id, e.occurred_on],
        "run",
      );
    },
    async reset(tx) {
      await tx.execute("delete from security_alerts", [], "run");
    },
  };
}
