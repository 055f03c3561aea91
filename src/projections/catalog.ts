/** `catalog`: the catalog read model of every course, deprecated ones included (CONTRACT.md §4). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import { COURSE_EVENTS, applyCourseEvent, courseRowShows, courseRowProperties, isCourseEvent, type CourseRow } from "./course-rows.js";
import { num } from "./sql-values.js";
import { typedEvent } from "./typed-event.js";

/** Catalog table. */
export const CatalogCourseSchema = new EntitySchema<CourseRow>({
  name: "CatalogCourse",
  tableName: "catalog_courses",
  properties: {
    course_id: { type: "string", length: 64, primary: true, fieldName: "course_id" },
    ...courseRowProperties,
  },
  indexes: [{ name: "catalog_courses_status", properties: ["status"] }],
});

/** The catalog projection: CourseCreated/Updated/Deprecated and CoursePolicyChanged → one row per course. */
export function catalog(): Subscriber {
  return {
    name: Consumers.Catalog,
    handles: { courses: [...COURSE_EVENTS] },
    entities: [CatalogCourseSchema],
    // Each event is one insert or version-guarded update, whatever the table holds.
    writesOnly: true,
    // Created with `on conflict do nothing`, changed only by a higher aggregate_version (course-rows.ts).
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (isCourseEvent(e)) await applyCourseEvent(tx, "catalog_courses", e);
    },
    async shows(raw, tx) {
      const e = typedEvent(raw);
      return !isCourseEvent(e) || (await courseRowShows(tx, "catalog_courses", e));
    },
    async reset(tx) {
      await tx.execute("delete from catalog_courses", [], "run");
    },
  };
}

/** A catalog course row, or undefined (for operators and tests: the contract answers GetCourse from the aggregate). */
export async function catalogCourse(tx: Tx, courseId: string): Promise<CourseRow | undefined> {
  const r = await tx.execute<CourseRow | undefined>("select * from catalog_courses where course_id = ?", [courseId], "get");
  return r && { ...r, version: num(r.version), price_amount: r.price_amount === null ? null : num(r.price_amount) };
}
