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
  /** The version of the latest event applied to the record. */
  version: number;
  /** The version of the event that last set the status; null on a row from before the column ({@link version} bounds it). */
  status_version: number | null;
  /** The version of the grant that last set expires_at and order_id; null as status_version. */
  grant_version: number | null;
  /** The version of the event that last set the progress; null as status_version. */
  progress_version: number | null;
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
    status_version: { type: "integer", nullable: true, fieldName: "status_version" },
    grant_version: { type: "integer", nullable: true, fieldName: "grant_version" },
    progress_version: { type: "integer", nullable: true, fieldName: "progress_version" },
  },
});

// A group of columns' version, or the record's where the row is from before the group's column.
const at = (group: string) => `coalesce(learner_access.${group}, learner_access.version)`;
// Sets `column` to the grant's value where its group's version is below the grant's.
const granted = (column: string, group: string) => `${column} = case when ${at(group)} < excluded.version then excluded.${column} else learner_access.${column} end`;

/**
 * The learner-progress projection: every access event, applied like the aggregate's own evolve. That fold
 * sets whole groups of fields — a grant the status, expiry and paying order (keeping progress and
 * completion), a revocation or expiry the status, ProgressUpdated the progress, CourseCompleted the
 * completion (only ever to true) — so each group keeps the version of the event that last set it, and an
 * event changes a group only when that version is lower (as course rows do, course-rows.ts): an event
 * already reflected changes nothing, and one applied after later events of its record (a dead letter
 * retried) sets what no later event replaced.
 */
export function learnerProgress(): Subscriber {
  return {
    name: LEARNER_PROGRESS,
    handles: { access: ["CourseAccessGranted", "AccessRevoked", "AccessExpired", "ProgressUpdated", "CourseCompleted"] },
    entities: [LearnerAccessSchema],
    // Each event is one insert or guarded update, whatever the read model holds.
    writesOnly: true,
    // Every statement is guarded by the versions of what it sets.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      const v = e.aggregate_version;
      // The record's version is its latest event's: raised, never lowered.
      const latest = "version = case when version < ? then ? else version end";
      // Sets one group of columns, and its version, where that version is below the event's.
      const set = (group: string, assignments: string, params: unknown[]) =>
        tx.execute(`update learner_access set ${assignments}, ${group} = ?, ${latest} where access_id = ? and ${at(group)} < ?`, [...params, v, v, v, e.aggregate_id, v], "run");
      switch (e.event_type) {
        case "CourseAccessGranted": {
          const { access_id, user_id, course_id, expires_at, order_id } = e.payload;
          // A re-grant keeps progress and completion, as the aggregate does.
          await tx.execute(
            `insert into learner_access (access_id, user_id, course_id, status, progress, completed, expires_at, order_id, version, status_version, grant_version, progress_version) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (access_id) do update set ${granted("status", "status_version")}, status_version = case when ${at("status_version")} < excluded.version then excluded.version else learner_access.status_version end, ${granted("expires_at", "grant_version")}, ${granted("order_id", "grant_version")}, grant_version = case when ${at("grant_version")} < excluded.version then excluded.version else learner_access.grant_version end, version = case when learner_access.version < excluded.version then excluded.version else learner_access.version end where ${at("status_version")} < excluded.version or ${at("grant_version")} < excluded.version`,
            [access_id, user_id, course_id, "active", 0, false, expires_at, order_id, v, v, v, v],
            "run",
          );
          return;
        }
        case "AccessRevoked":
          return void (await set("status_version", "status = ?", ["revoked"]));
        case "AccessExpired":
          return void (await set("status_version", "status = ?", ["expired"]));
        case "ProgressUpdated":
          return void (await set("progress_version", "progress = ?", [e.payload.progress]));
        case "CourseCompleted":
          // Completion is never undone: set once, whatever came after it.
          return void (await tx.execute(`update learner_access set completed = ?, ${latest} where access_id = ? and not completed`, [true, v, v, e.aggregate_id], "run"));
      }
    },
    async shows(raw, tx) {
      const e = typedEvent(raw);
      const row = await tx.execute<Record<string, unknown> | undefined>("select version, status_version, grant_version, progress_version, completed from learner_access where access_id = ?", [e.aggregate_id], "get");
      if (!row) return false;
      const v = e.aggregate_version;
      // A group with a version shows the event at or past it; one without, only where the event is the record's latest.
      const holds = (group: string) => (row[group] === null || row[group] === undefined ? num(row.version) === v : num(row[group]) >= v);
      switch (e.event_type) {
        case "CourseAccessGranted":
          return holds("status_version") && holds("grant_version");
        case "AccessRevoked":
        case "AccessExpired":
          return holds("status_version");
        case "ProgressUpdated":
          return holds("progress_version");
        case "CourseCompleted":
          return bool(row.completed);
        default:
          return true;
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
