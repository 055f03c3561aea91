/** The course row that `catalog` and `search` each keep in their own table, applied the same way. */
import type { EventEnvelope, QueryResult } from "../../contracts/index.js";
import type { Tx } from "../consumers/index.js";
import { moneyOf } from "./sql-values.js";

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
  version: number;
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
  updated_on: { type: "string", length: 32, fieldName: "updated_on" },
} as const;

type CourseEvent = EventEnvelope<(typeof COURSE_EVENTS)[number]>;

/**
 * Applies a course event to `table` (keyed by a unique `course_id`). Every change is guarded by the
 * aggregate version, so re-applying an event, even without the inbox, changes nothing.
 */
export async function applyCourseEvent(tx: Tx, table: string, e: CourseEvent): Promise<void> {
  const v = e.aggregate_version;
  const set = (assignments: string, params: unknown[]) =>
    tx.execute(`update ${table} set ${assignments}, version = ?, updated_on = ? where course_id = ? and version < ?`, [...params, v, e.occurred_on, e.aggregate_id, v], "run");
  switch (e.event_type) {
    case "CourseCreated": {
      const p = e.payload;
      await tx.execute(
        `insert into ${table} (course_id, title, description, price_amount, price_currency, instructor_id, policy_id, status, version, updated_on) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (course_id) do nothing`,
        [p.course_id, p.title, "", null, null, p.instructor_id, p.policy_id, "active", v, e.occurred_on],
        "run",
      );
      return;
    }
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
