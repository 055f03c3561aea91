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
  /**
   * The CourseCreated's version; 0 on a row made by a later event of the course that came before its creation
   * (its status {@link PENDING}, its instructor unknown), null on a row from before the column (made by its creation).
   */
  created_version: number | null;
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
  created_version: { type: "integer", nullable: true, fieldName: "created_version" },
  updated_on: { type: "string", length: 32, fieldName: "updated_on" },
} as const;

type CourseEvent = EventEnvelope<(typeof COURSE_EVENTS)[number]>;

/** The column of the version of the group of columns each event after the creation sets. */
const GROUP_VERSION = { CourseUpdated: "details_version", CourseDeprecated: "status_version", CoursePolicyChanged: "policy_version" } as const;

/**
 * The status of a row whose creation has not been applied yet: a later event of its course came first. No
 * reader shows it (the catalog's and search's readers ask for `active`), and its creation fills it in.
 */
export const PENDING = "pending";

// A course row's columns, in the order every insert of one gives them.
const COLUMNS = "course_id, title, description, price_amount, price_currency, instructor_id, policy_id, status, version, details_version, status_version, policy_version, created_version, updated_on";

/**
 * Applies a course event to `table` (keyed by a unique `course_id`). The aggregate's fold sets whole
 * groups of fields — CourseUpdated title, description and price, CourseDeprecated the status,
 * CoursePolicyChanged the policy — so each group keeps the version of the event that last set it, and an
 * event changes its group only when that version is lower. Re-applying an event, even without the inbox,
 * changes nothing; applying one after later events of its course (a dead letter retried) sets what no
 * later event replaced: the row the events give in stream order, whatever order they come in. That holds
 * for the creation too: an event that finds no row makes one with its own group set and the others at
 * version 0, {@link PENDING} (a consumer taken over can deliver an update before the creation another
 * reader holds; it found no row and was lost, and the creation then wrote its older values for good), and
 * the creation fills in only the groups still at 0. A group without a version (a row from before those
 * columns) counts as of the row's `version`, which is never below it: the event is then applied only
 * where the whole row is older.
 */
export async function applyCourseEvent(tx: Tx, table: string, e: CourseEvent): Promise<void> {
  const v = e.aggregate_version;
  // The row's version and time are its latest event's: raised, never lowered.
  const latest = `version = case when ${table}.version < excluded.version then excluded.version else ${table}.version end, updated_on = case when ${table}.version < excluded.version then excluded.updated_on else ${table}.updated_on end`;
  if (e.event_type === "CourseCreated") {
    const p = e.payload;
    // Sets a column of a group still at 0 (its event has not come), and that group's version.
    const fill = (group: string, ...columns: string[]) =>
      [...columns.map((c) => `${c} = case when ${table}.${group} = 0 then excluded.${c} else ${table}.${c} end`), `${group} = case when ${table}.${group} = 0 then excluded.${group} else ${table}.${group} end`].join(", ");
    await tx.execute(
      `insert into ${table} (${COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (course_id) do update set ${fill("details_version", "title", "description", "price_amount", "price_currency")}, ${fill("status_version", "status")}, ${fill("policy_version", "policy_id")}, instructor_id = excluded.instructor_id, created_version = excluded.created_version, ${latest} where ${table}.created_version = 0`,
      [p.course_id, p.title, "", null, null, p.instructor_id, p.policy_id, "active", v, v, v, v, v, e.occurred_on],
      "run",
    );
    return;
  }
  const group = GROUP_VERSION[e.event_type];
  // The row made when the creation has not come: this event's group set, the others at 0.
  const row = { title: "", description: "", price_amount: null as number | null, price_currency: null as string | null, policy_id: "", status: PENDING, details_version: 0, status_version: 0, policy_version: 0 };
  let assignments: string[];
  switch (e.event_type) {
    case "CourseUpdated": {
      const p = e.payload;
      Object.assign(row, { title: p.title, description: p.description, price_amount: p.price?.amount ?? null, price_currency: p.price?.currency ?? null, details_version: v });
      assignments = ["title", "description", "price_amount", "price_currency"];
      break;
    }
    case "CourseDeprecated":
      Object.assign(row, { status: "deprecated", status_version: v });
      assignments = ["status"];
      break;
    case "CoursePolicyChanged":
      Object.assign(row, { policy_id: e.payload.new_policy_id, policy_version: v });
      assignments = ["policy_id"];
      break;
  }
  const values = [e.aggregate_id, row.title, row.description, row.price_amount, row.price_currency, "", row.policy_id, row.status, v, row.details_version, row.status_version, row.policy_version, 0, e.occurred_on];
  const upsert = `on conflict (course_id) do update set ${assignments.map((c) => `${c} = excluded.${c}`).join(", ")}, ${group} = excluded.${group}, ${latest} where coalesce(${table}.${group}, ${table}.version) < excluded.${group}`;
  if (tx.dialect === "postgresql") {
    // PostgreSQL's upsert draws a value of the serial search_documents.doc_id (int4) even where it updates: every
    // event used one, and at the sequence's end every event failed. The row, where there is one, takes a guarded
    // update; the insert, of typed values (a select's are text), only a course without one (or, raced, the upsert).
    await tx.execute(
      `update ${table} set ${assignments.map((c) => `${c} = ?`).join(", ")}, ${group} = ?, version = case when version < ? then ? else version end, updated_on = case when version < ? then ? else updated_on end where course_id = ? and coalesce(${group}, version) < ?`,
      [...assignments.map((c) => row[c as keyof typeof row]), v, v, v, v, e.occurred_on, e.aggregate_id, v],
      "run",
    );
    await tx.execute(
      `insert into ${table} (${COLUMNS}) select ?, ?, ?, cast(? as bigint), ?, ?, ?, ?, cast(? as integer), cast(? as integer), cast(? as integer), cast(? as integer), cast(? as integer), ? where not exists (select 1 from ${table} where course_id = ?) ${upsert}`,
      [...values, e.aggregate_id],
      "run",
    );
    return;
  }
  await tx.execute(`insert into ${table} (${COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ${upsert}`, values, "run");
}

/**
 * Whether the row in `table` shows course event `e` once it has been applied (in the same transaction):
 * its group holds `e`'s values or a later event's that replaced them. False when the row is absent (no event
 * of its course was applied), for a creation when the row is still {@link PENDING}, or when the group has no
 * version (a row from before those columns) and the row has moved past `e`: what `e` would set may or may
 * not have been replaced since, which only a replay tells.
 */
export async function courseRowShows(tx: Tx, table: string, e: CourseEvent): Promise<boolean> {
  const row = await tx.execute<Record<string, unknown> | undefined>(`select version, details_version, status_version, policy_version, created_version from ${table} where course_id = ?`, [e.aggregate_id], "get");
  if (!row) return false;
  // Made by its creation (null: before the column), or by a later event with the creation still to come (0).
  if (e.event_type === "CourseCreated") return row.created_version === null || row.created_version === undefined || num(row.created_version) > 0;
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
