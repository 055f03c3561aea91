/** `analytics`: per-course learning statistics, and CourseStats (CONTRACT.md §4, §5). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, type QueryResult } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import { num } from "./sql-values.js";
import { typedEvent } from "./typed-event.js";

/** One learner's latest progress on one course. */
export interface LearnerStatRow {
  course_id: string;
  user_id: string;
  progress: number;
  completed: boolean;
  updated_on: string;
}

/** Per-learner progress table, from which the per-course figures are computed. */
export const LearnerStatSchema = new EntitySchema<LearnerStatRow>({
  name: "AnalyticsLearner",
  tableName: "analytics_learners",
  properties: {
    course_id: { type: "string", length: 64, primary: true, fieldName: "course_id" },
    user_id: { type: "string", length: 64, primary: true, fieldName: "user_id" },
    progress: { type: "integer", fieldName: "progress" },
    completed: { type: "boolean", fieldName: "completed" },
    updated_on: { type: "string", length: 32, fieldName: "updated_on" },
  },
});

/** The analytics projection: ProgressUpdated and CourseCompleted → each learner's latest progress per course. */
export function analytics(): Subscriber {
  return {
    name: Consumers.Analytics,
    handles: { access: ["ProgressUpdated", "CourseCompleted"] },
    entities: [LearnerStatSchema],
    // Each event is one insert or guarded update, whatever the read model holds.
    writesOnly: true,
    // A learner's progress is replaced only by a larger one, and completion sets the same values again.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (e.event_type === "ProgressUpdated") {
        const { course_id, user_id, progress } = e.payload;
        // Progress never goes down, so the largest value seen is the latest, whatever the delivery order.
        await tx.execute(
          "insert into analytics_learners (course_id, user_id, progress, completed, updated_on) values (?, ?, ?, ?, ?) on conflict (course_id, user_id) do update set progress = excluded.progress, updated_on = excluded.updated_on where analytics_learners.progress < excluded.progress",
          [course_id, user_id, progress, false, e.occurred_on],
          "run",
        );
      } else if (e.event_type === "CourseCompleted") {
        const { course_id, user_id } = e.payload;
        // Completion means 100%: a row is made complete even if its ProgressUpdated has not been seen.
        await tx.execute(
          "insert into analytics_learners (course_id, user_id, progress, completed, updated_on) values (?, ?, ?, ?, ?) on conflict (course_id, user_id) do update set progress = excluded.progress, completed = excluded.completed",
          [course_id, user_id, 100, true, e.occurred_on],
          "run",
        );
      }
    },
    async reset(tx) {
      await tx.execute("delete from analytics_learners", [], "run");
    },
  };
}

/** CourseStats: learners with progress on a course, completions, and their average latest progress (0 when none). */
export function courseStats(tx: Tx) {
  return async (body: { course_id: string }): Promise<QueryResult<"CourseStats">> => {
    const row = await tx.execute<{ learners: unknown; completions: unknown; average: unknown } | undefined>(
      "select count(*) as learners, coalesce(sum(case when completed = ? then 1 else 0 end), 0) as completions, coalesce(avg(progress), 0) as average from analytics_learners where course_id = ?",
      [true, body.course_id],
      "get",
    );
    // Two decimals: enough for a dashboard, and stable across SQLite's and PostgreSQL's averages.
    const average = Math.round(num(row?.average) * 100) / 100;
    return { course_id: body.course_id, learners: num(row?.learners), completions: num(row?.completions), average_progress: average };
  };
}
