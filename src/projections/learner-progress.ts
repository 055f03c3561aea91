/** `learner-progress`: every learner's access records, and GetLearnerProgress (CONTRACT.md §5). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, type QueryResult } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import { bool, num } from "./sql-values.js";
import { typedEvent } from "./typed-event.js";
import { boundedRows } from "./bounded-rows.js";

/** The durable consumer's name (an extra subscribing context the contract's "…" allows). */
export const LEARNER_PROGRESS = Consumers.LearnerProgress;

/** One access record as a learner sees it. */
export interface LearnerAccessRow {
  access_id: string;
  user_id: string;
  course_id: string;
  status: string;
  progress: number;
  completed: boolean;
  expires_at: string | null;
  /** The paying order of the current grant; null when none (or a version-1 grant). */
  order_id: string | null;
  version: number;
}

/** Learner access table. */
export const LearnerAccessSchema = new EntitySchema<LearnerAccessRow>({
  name: "LearnerAccess",
  tableName: "learner_access",
  properties: {
    access_id: { type: "string", length: 36, primary: true, fieldName: "access_id" },
    user_id: { type: "string", length: 64, index: true, fieldName: "user_id" },
    course_id: { type: "string", length: 64, fieldName: "course_id" },
    status: { type: "string", length: 16, fieldName: "status" },
    progress: { type: "integer", fieldName: "progress" },
    completed: { type: "boolean", fieldName: "completed" },
    expires_at: { type: "string", length: 32, nullable: true, fieldName: "expires_at" },
    order_id: { type: "string", length: 64, nullable: true, fieldName: "order_id" },
    version: { type: "integer", fieldName: "version" },
  },
});

/**
 * The learner-progress projection: every access event, applied like the aggregate's own evolve. Each
 * statement is guarded by `aggregate_version`, so an event already reflected changes nothing.
 */
export function learnerProgress(): Subscriber {
  return {
    name: LEARNER_PROGRESS,
    handles: { access: ["CourseAccessGranted", "AccessRevoked", "AccessExpired", "ProgressUpdated", "CourseCompleted"] },
    entities: [LearnerAccessSchema],
    // Each event is one insert or guarded update, whatever the read model holds.
    writesOnly: true,
    // Every statement is guarded by aggregate_version.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      const v = e.aggregate_version;
      const set = (assignments: string, params: unknown[]) =>
        tx.execute(`update learner_access set ${assignments}, version = ? where access_id = ? and version < ?`, [...params, v, e.aggregate_id, v], "run");
      switch (e.event_type) {
        case "CourseAccessGranted": {
          const { access_id, user_id, course_id, expires_at, order_id } = e.payload;
          // A re-grant keeps progress and completion, as the aggregate does.
          await tx.execute(
            "insert into learner_access (access_id, user_id, course_id, status, progress, completed, expires_at, order_id, version) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (access_id) do update set status = excluded.status, expires_at = excluded.expires_at, order_id = excluded.order_id, version = excluded.version where learner_access.version < excluded.version",
            [access_id, user_id, course_id, "active", 0, false, expires_at, order_id, v],
            "run",
          );
          return;
        }
        case "AccessRevoked":
          return void (await set("status = ?", ["revoked"]));
        case "AccessExpired":
          return void (await set("status = ?", ["expired"]));
        case "ProgressUpdated":
          return void (await set("progress = ?", [e.payload.progress]));
        case "CourseCompleted":
          return void (await set("completed = ?", [true]));
      }
    },
    async reset(tx) {
      await tx.execute("delete from learner_access", [], "run");
    },
  };
}

/** GetLearnerProgress: a learner's access records, by course. */
export function getLearnerProgress(tx: Tx) {
  return async (body: { user_id: string }): Promise<QueryResult<"GetLearnerProgress">> => {
    const rows = await boundedRows<LearnerAccessRow>(tx, "select * from learner_access where user_id = ? order by course_id", [body.user_id], `the access records of ${body.user_id}`);
    return {
      items: rows.map((r) => ({
        access_id: r.access_id,
        user_id: r.user_id,
        course_id: r.course_id,
        status: r.status as "active" | "revoked" | "expired",
        progress: num(r.progress),
        completed: bool(r.completed),
        expires_at: r.expires_at,
        order_id: r.order_id ?? null,
        version: num(r.version),
      })),
    };
  };
}
