/** `notifications`: welcome, e-mail change and access notices, and ListNotifications (CONTRACT.md §4, §5). */
import { createHash } from "node:crypto";
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, type QueryResult } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import { typedEvent } from "./typed-event.js";
import { userList, type UserList } from "./bounded-rows.js";

/** One notification, as stored (`to_address`: `to` is an SQL keyword). */
export interface NotificationRow {
  notification_id: string;
  user_id: string;
  kind: string;
  to_address: string | null;
  message: string;
  event_id: string;
  created_on: string;
}

/** A user's address from a point in time on: learner notices go to the address valid when their event happened. */
export interface NotificationEmailRow {
  user_id: string;
  version: number;
  since: string;
  email: string;
}

/** Notification table. */
export const NotificationSchema = new EntitySchema<NotificationRow>({
  name: "Notification",
  tableName: "notifications",
  properties: {
    notification_id: { type: "string", length: 40, primary: true, fieldName: "notification_id" },
    user_id: { type: "string", length: 64, fieldName: "user_id" },
    kind: { type: "string", length: 32, fieldName: "kind" },
    to_address: { type: "string", length: 254, nullable: true, fieldName: "to_address" },
    message: { type: "text", fieldName: "message" },
    event_id: { type: "string", length: 36, fieldName: "event_id" },
    created_on: { type: "string", length: 32, fieldName: "created_on" },
  },
  indexes: [{ name: "notifications_user_created", properties: ["user_id", "created_on"] }],
});

/** Address history table (user_id → e-mail), fed by UserRegistered and UserEmailChanged. */
export const NotificationEmailSchema = new EntitySchema<NotificationEmailRow>({
  name: "NotificationEmail",
  tableName: "notification_emails",
  properties: {
    user_id: { type: "string", length: 64, primary: true, fieldName: "user_id" },
    version: { type: "integer", primary: true, fieldName: "version" },
    since: { type: "string", length: 32, fieldName: "since" },
    email: { type: "string", length: 254, fieldName: "email" },
  },
});

/** Notification kinds. */
export const NotificationKinds = {
  Welcome: "welcome",
  EmailChanged: "email_changed",
  AccessRevoked: "access_revoked",
  AccessExpired: "access_expired",
} as const;

const LEARNER_KINDS = [NotificationKinds.AccessRevoked, NotificationKinds.AccessExpired];

/** A notification id: the same event and recipient role always give the same id, so re-applying is a no-op. */
export const notificationIdOf = (eventId: string, role: string): string =>
  `ntf_${createHash("sha256").update(`${eventId}:${role}`).digest("hex").slice(0, 32)}`;

// The address valid at a moment; ties on the same millisecond go to the later user version.
const emailAt = (user: string, at: string) =>
  `select h.email from notification_emails h where h.user_id = ${user} and h.since <= ${at} order by h.since desc, h.version desc limit 1`;
const EMAIL_AT = emailAt("?", "?");
const EMAIL_AT_NOTICE = emailAt("notifications.user_id", "notifications.created_on");

async function insert(tx: Tx, n: Omit<NotificationRow, "notification_id">, role: string): Promise<void> {
  await tx.execute(
    "insert into notifications (notification_id, user_id, kind, to_address, message, event_id, created_on) values (?, ?, ?, ?, ?, ?, ?) on conflict (notification_id) do nothing",
    [notificationIdOf(n.event_id, role), n.user_id, n.kind, n.to_address, n.message, n.event_id, n.created_on],
    "run",
  );
}

/**
 * Records an address and re-addresses the user's learner notices. The users and access streams come
 * through separate durable consumers, in no fixed order between them, so a notice may be written before
 * the address it needs is known; this makes the rows the same whatever the order, so a replay is exact.
 */
async function rememberEmail(tx: Tx, userId: string, version: number, since: string, email: string): Promise<void> {
  await tx.execute("insert into notification_emails (user_id, version, since, email) values (?, ?, ?, ?) on conflict (user_id, version) do nothing", [userId, version, since, email], "run");
  // Only notices from this address's moment on can take it (the address of a notice is the one valid when it
  // was made), and only those whose address changes are written: the update rewrote every learner notice of
  // the user on every address change — thousands of rows (dead tuples on PostgreSQL) for a user with many
  // revocations, one request each (client-driven volume audit).
  await tx.execute(
    `update notifications set to_address = (${EMAIL_AT_NOTICE}) where user_id = ? and kind in (?, ?) and created_on >= ? and to_address is distinct from (${EMAIL_AT_NOTICE})`,
    [userId, ...LEARNER_KINDS, since],
    "run",
  );
}

/** The notifications projection. */
export function notifications(): Subscriber {
  return {
    name: Consumers.Notifications,
    handles: { users: ["UserRegistered", "UserEmailChanged"], access: ["AccessRevoked", "AccessExpired"] },
    entities: [NotificationSchema, NotificationEmailSchema],
    // Notices are keyed by (event, recipient role) and addresses by (user, version), both `on conflict do
    // nothing`; re-addressing sets what the addresses known say, whatever ran before.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      const base = { event_id: e.event_id, created_on: e.occurred_on };
      switch (e.event_type) {
        case "UserRegistered": {
          const { user_id, email, name } = e.payload;
          await rememberEmail(tx, user_id, e.aggregate_version, e.occurred_on, email);
          await insert(tx, { ...base, user_id, kind: NotificationKinds.Welcome, to_address: email, message: `Welcome aboard, ${name}! Your account is ready.` }, "user");
          return;
        }
        case "UserEmailChanged": {
          const { user_id, old_email, new_email } = e.payload;
          await rememberEmail(tx, user_id, e.aggregate_version, e.occurred_on, new_email);
          const kind = NotificationKinds.EmailChanged;
          // The old address hears of it too: if the change was not the owner's doing, this is their alarm.
          await insert(tx, { ...base, user_id, kind, to_address: old_email, message: `Your account's e-mail address was changed to ${new_email}. If this was not you, contact support.` }, "old");
          await insert(tx, { ...base, user_id, kind, to_address: new_email, message: "This is now your account's e-mail address." }, "new");
          return;
        }
        case "AccessRevoked":
        case "AccessExpired": {
          const { user_id, course_id } = e.payload;
          const to = (await tx.execute<{ email: string } | undefined>(EMAIL_AT, [user_id, e.occurred_on], "get"))?.email ?? null;
          const revoked = e.event_type === "AccessRevoked";
          await insert(
            tx,
            {
              ...base,
              user_id,
              kind: revoked ? NotificationKinds.AccessRevoked : NotificationKinds.AccessExpired,
              to_address: to,
              message: revoked ? `Your access to course ${course_id} was revoked (${e.payload.reason}).` : `Your access to course ${course_id} expired at ${e.payload.expired_at}.`,
            },
            "learner",
          );
          return;
        }
      }
    },
    async reset(tx) {
      await tx.execute("delete from notifications", [], "run");
      await tx.execute("delete from notification_emails", [], "run");
    },
  };
}

/**
 * A user's notifications, newest first: ties by event (later first), then by id. A learner notice's
 * address is read from the addresses as they are now known: on PostgreSQL the users and access streams
 * commit side by side, and a notice written while the address change before it was still uncommitted
 * kept the older address (or none), which the change's re-addressing could not see.
 */
const NOTIFICATIONS: UserList<NotificationRow & { to_now: string | null }> = {
  computed: {
    sql: `, case when kind in (?, ?) then coalesce((${EMAIL_AT_NOTICE}), to_address) else to_address end as to_now`,
    params: [...LEARNER_KINDS],
  },
  table: "notifications",
  id: "notification_id",
  order: "order by created_on desc, event_id desc, notification_id asc",
  // Older, or as old from an earlier event, or the same event's later ids.
  after: (n) => ({
    where: "(created_on < ? or (created_on = ? and (event_id < ? or (event_id = ? and notification_id > ?))))",
    params: [n.created_on, n.created_on, n.event_id, n.event_id, n.notification_id],
  }),
};

/** ListNotifications: a user's notifications, newest first — whole, or a page when `after` or `limit` is given ({@link userList}). */
export function listNotifications(tx: Tx) {
  return async (body: { user_id: string; after?: string | undefined; limit?: number | undefined }): Promise<QueryResult<"ListNotifications">> => {
    const { rows, next } = await userList(tx, NOTIFICATIONS, body, `the notifications of ${body.user_id}`);
    const items = rows.map((r) => ({
      notification_id: r.notification_id,
      user_id: r.user_id,
      kind: r.kind,
      to: r.to_now,
      message: r.message,
      event_id: r.event_id,
      created_on: r.created_on,
    }));
    return next === undefined ? { items } : { items, next_after: next };
  };
}
