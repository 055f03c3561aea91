/** `learner-progress`: every learner's access records, and GetLearnerProgress (CONTRACT.md §5). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, type EventEnvelope, type QueryResult } from "../../contracts/index.js";
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
  /** The version of the grant that last set expires_at and order_id; null as status_version, 0 while no grant has come ({@link PENDING_GRANT}). */
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

// An access record's insert: every column, in this order.
const INSERT = "insert into learner_access (access_id, user_id, course_id, status, progress, completed, expires_at, order_id, version, status_version, grant_version, progress_version) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const ACCESS_EVENTS = ["CourseAccessGranted", "AccessRevoked", "AccessExpired", "ProgressUpdated", "CourseCompleted"] as const;
type AccessEvent = EventEnvelope<(typeof ACCESS_EVENTS)[number]>;
const isAccessEvent = (e: EventEnvelope): e is AccessEvent => (ACCESS_EVENTS as readonly string[]).includes(e.event_type);

/** The status of a record no grant has reached yet: a later event of it came first. GetLearnerProgress leaves it out. */
export const PENDING_GRANT = "pending";

/**
 * The learner-progress projection: every access event, applied like the aggregate's own evolve. That fold
 * sets whole groups of fields — a grant the status, expiry and paying order (keeping progress and
 * completion), a revocation or expiry the status, ProgressUpdated the progress, CourseCompleted the
 * completion (only ever to true) — so each group keeps the version of the event that last set it, and an
 * event changes a group only when that version is lower (as course rows do, course-rows.ts): an event
 * already reflected changes nothing, and one applied after later events of its record (a dead letter
 * retried) sets what no later event replaced. That holds for the grant too: an event that finds no record
 * makes one with its own group set and the others at version 0 ({@link PENDING_GRANT}, hidden from
 * GetLearnerProgress), which the grant then fills in — a consumer taken over can deliver a revocation or a
 * progress before the grant another reader holds, and they were lost (the record active, or at progress 0,
 * for good).
 */
export function learnerProgress(): Subscriber {
  return {
    name: LEARNER_PROGRESS,
    handles: { access: [...ACCESS_EVENTS] },
    entities: [LearnerAccessSchema],
    // Each event is one insert or guarded update, whatever the read model holds.
    writesOnly: true,
    // Every statement is guarded by the versions of what it sets.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (!isAccessEvent(e)) return;
      const v = e.aggregate_version;
      const { access_id, user_id, course_id } = e.payload;
      // The record's version is its latest event's: raised, never lowered.
      const latest = "version = case when learner_access.version < excluded.version then excluded.version else learner_access.version end";
      if (e.event_type === "CourseAccessGranted") {
        const { expires_at, order_id } = e.payload;
        // A re-grant keeps progress and completion, as the aggregate does. A grant sets no progress: a new
        // record's progress group stays at 0, for a ProgressUpdated of an earlier grant that comes after it.
        await tx.execute(
          `${INSERT} on conflict (access_id) do update set ${granted("status", "status_version")}, status_version = case when ${at("status_version")} < excluded.version then excluded.version else learner_access.status_version end, ${granted("expires_at", "grant_version")}, ${granted("order_id", "grant_version")}, grant_version = case when ${at("grant_version")} < excluded.version then excluded.version else learner_access.grant_version end, ${latest} where ${at("status_version")} < excluded.version or ${at("grant_version")} < excluded.version`,
          [access_id, user_id, course_id, "active", 0, false, expires_at, order_id, v, v, v, 0],
          "run",
        );
        return;
      }
      // The record as this event makes it when no grant has come yet (PENDING_GRANT, hidden from
      // GetLearnerProgress until one does): its own group set, the others at version 0.
      const row = { status: PENDING_GRANT, progress: 0, completed: false, status_version: 0, progress_version: 0 };
      let update = "";
      switch (e.event_type) {
        case "AccessRevoked":
        case "AccessExpired":
          Object.assign(row, { status: e.event_type === "AccessRevoked" ? "revoked" : "expired", status_version: v });
          update = `status = excluded.status, status_version = excluded.status_version, ${latest} where ${at("status_version")} < excluded.version`;
          break;
        case "ProgressUpdated":
          Object.assign(row, { progress: e.payload.progress, progress_version: v });
          update = `progress = excluded.progress, progress_version = excluded.progress_version, ${latest} where ${at("progress_version")} < excluded.version`;
          break;
        case "CourseCompleted":
          // Completion is never undone: set once, whatever came after it.
          row.completed = true;
          update = `completed = excluded.completed, ${latest} where not learner_access.completed`;
          break;
      }
      await tx.execute(
        `${INSERT} on conflict (access_id) do update set ${update}`,
        [access_id, user_id, course_id, row.status, row.progress, row.completed, null, null, v, row.status_version, 0, row.progress_version],
        "run",
      );
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
    const rows = await boundedRows<LearnerAccessRow>(tx, "select * from learner_access where user_id = ? and (grant_version is null or grant_version > 0) order by course_id", [body.user_id], `the access records of ${body.user_id}`);
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
