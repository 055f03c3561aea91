/** The course row that `catalog` and `search` each keep in their own table, applied the same way. */
import type { EventEnvelope, QueryResult } from "../../contracts/index.js";
import type { Tx } from "../consumers/index.js";
import { moneyOf, num } from "./sql-values.js";

/** The events that shape a course row. */
export const COURSE_EVENTS = ["CourseCreated", "CourseUpdated", "CourseDeprecated", "CoursePolicyChanged"] as const;

/** A course row's columns, shared by the catalog and search tables. */
export interface CourseRow {
  course_id: string;
  title: string;
  description: string;
  price_amount: number | null;
  price_currency: string | null;
  instructor_id: string;
  policy_id: string;
  status: string;
  /** The version of the latest event applied to the row. */
  version: number;
  /** The version of the event that last set title, description and price; null on a row from before the column ({@link version} bounds it). */
  details_version: number | null;
  /** The version of the event that last set the status; null as details_version. */
  status_version: number | null;
  /** The version of the event that last set the policy; null as details_version. */
  policy_version: number | null;
  updated_on: string;
}

/** MikroORM properties of a course row, for each table's EntitySchema. */
export const courseRowProperties = {
  title: { type: "string", length: 200, fieldName: "title" },
  description: { type: "text", fieldName: "description" },
  price_amount: { type: "bigint", nullable: true, fieldName: "price_amount" },
  price_currency: { type: "string", length: 3, nullable: true, fieldName: "price_currency" },
  instructor_id: { type: "string", length: 64, fieldName: "instructor_id" },
  policy_id: { type: "string", length: 64, fieldName: "policy_id" },
  status: { type: "string", length: 16, fieldName: "status" },
  version: { type: "integer", fieldName: "version" },
  details_version: { type: "integer", nullable: true, fieldName: "details_version" },
  status_version: { type: "integer", nullable: true, fieldName: "status_version" },
  policy_version: { type: "integer", nullable: true, fieldName: "policy_version" },
  updated_on: { type: "string", length: 32, fieldName: "updated_on" },
} as const;

type CourseEvent = EventEnvelope<(typeof COURSE_EVENTS)[number]>;

/** The column of the version of the group of columns each event after the creation sets. */
const GROUP_VERSION = { CourseUpdated: "details_version", CourseDeprecated: "status_version", CoursePolicyChanged: "policy_version" } as const;

/**
 * Applies a course event to `table` (keyed by a unique `course_id`). The aggregate's fold sets whole
 * groups of fields — CourseUpdated title, description and price, CourseDeprecated the status,
 * CoursePolicyChanged the policy — so each group keeps the version of the event that last set it, and an
 * event changes its group only when that version is lower. Re-applying an event, even without the inbox,
 * changes nothing; applying one after later events of its course (a dead letter retried) sets what no
 * later event replaced: the row the events give in stream order, whatever order they come in after the
 * creation. A group without a version (a row from before those columns) counts as of the row's `version`,
 * which is never below it: the event is then applied only where the whole row is older.
 */
export async function applyCourseEvent(tx: Tx, table: string, e: CourseEvent): Promise<void> {
  const v = e.aggregate_version;
  if (e.event_type === "CourseCreated") {
    const p = e.payload;
    await tx.execute(
      `insert into ${table} (course_id, title, description, price_amount, price_currency, instructor_id, policy_id, status, version, details_version, status_version, policy_version, updated_on) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (course_id) do nothing`,
      [p.course_id, p.title, "", null, null, p.instructor_id, p.policy_id, "active", v, v, v, v, e.occurred_on],
      "run",
    );
    return;
  }
  const group = GROUP_VERSION[e.event_type];
  // The row's version and time are its latest event's: raised, never lowered.
  const set = (assignments: string, params: unknown[]) =>
    tx.execute(
      `update ${table} set ${assignments}, ${group} = ?, version = case when version < ? then ? else version end, updated_on = case when version < ? then ? else updated_on end where course_id = ? and coalesce(${group}, version) < ?`,
      [...params, v, v, v, v, e.occurred_on, e.aggregate_id, v],
      "run",
    );
  switch (e.event_type) {
    case "CourseUpdated": {
      const p = e.payload;
      await set("title = ?, description = ?, price_amount = ?, price_currency = ?", [p.title, p.description, p.price?.amount ?? null, p.price?.currency ?? null]);
      return;
    }
    case "CourseDeprecated":
      await set("status = ?", ["deprecated"]);
      return;
    case "CoursePolicyChanged":
      await set("policy_id = ?", [e.payload.new_policy_id]);
      return;
  }
}

/**
 * Whether the row in `table` shows course event `e` once it has been applied (in the same transaction):
 * its group holds `e`'s values or a later event's that replaced them. False when the row is absent (its
 * creation was never applied), or when its group has no version (a row from before those columns) and the
 * row has moved past `e`: what `e` would set may or may not have been replaced since, which only a replay
 * tells.
 */
export async function courseRowShows(tx: Tx, table: string, e: CourseEvent): Promise<boolean> {
  const row = await tx.execute<Record<string, unknown> | undefined>(`select version, details_version, status_version, policy_version from ${table} where course_id = ?`, [e.aggregate_id], "get");
  if (!row) return false;
  if (e.event_type === "CourseCreated") return true;
  const at = row[GROUP_VERSION[e.event_type]];
  return at === null || at === undefined ? num(row.version) === e.aggregate_version : num(at) >= e.aggregate_version;
}

/** Whether an event is one that shapes a course row. */
export const isCourseEvent = (e: EventEnvelope): e is CourseEvent => (COURSE_EVENTS as readonly string[]).includes(e.event_type);

/** A course row as the contract's CatalogItem. */
export function catalogItemOf(r: CourseRow): QueryResult<"SearchCatalog">["items"][number] {
  return {
    course_id: r.course_id,
    title: r.title,
    description: r.description,
    price: moneyOf(r.price_amount, r.price_currency),
    instructor_id: r.instructor_id,
    policy_id: r.policy_id,
  };
}
