/** `policy-sync`: the process manager that moves active courses off a deprecated refund policy (CONTRACT.md §4). */
import { EntitySchema } from "@mikro-orm/core";
import type { CourseState } from "../../actors/courses/index.js";
import type { RefundPolicyState } from "../../actors/policies/index.js";
import { Consumers, type EnvelopeBase } from "../../contracts/index.js";
import { txOf, type Subscriber } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import type { Database } from "../persistence/index.js";
import type { CommandBus } from "../runtime/index.js";
import { eachAtMost } from "../support/each-at-most.js";
import { idempotencyKeyOf, issueCommand } from "./issue-command.js";
import { typedEvent } from "./typed-event.js";

/** Stranded courses read per statement on a PolicyDeprecated. */
const STRANDED_PAGE = 500;
/** A course's status in the index once it is on a deprecated policy with nowhere to go. */
const STRANDED = "stranded";
/** Courses moved at once: each move is reads and a command in the course's mailbox. */
export const MOVES_AT_ONCE = 16;

/** Which policy a course follows, as far as the courses stream has told. */
export interface PolicySyncCourseRow {
  course_id: string;
  policy_id: string;
  status: string;
  version: number;
}

/** A policy known to be deprecated, with its replacement. */
export interface PolicySyncDeprecatedRow {
  policy_id: string;
  replacement_policy_id: string | null;
  deprecated_on: string;
}

/** The course → policy index of policy-sync. */
export const PolicySyncCourseSchema = new EntitySchema<PolicySyncCourseRow>({
  name: "PolicySyncCourse",
  tableName: "policy_sync_courses",
  properties: {
    course_id: { type: "string", length: 64, primary: true, fieldName: "course_id" },
    policy_id: { type: "string", length: 64, index: true, fieldName: "policy_id" },
    status: { type: "string", length: 16, fieldName: "status" },
    version: { type: "integer", fieldName: "version" },
  },
});

/** The deprecated policies policy-sync has seen. */
export const PolicySyncDeprecatedSchema = new EntitySchema<PolicySyncDeprecatedRow>({
  name: "PolicySyncDeprecated",
  tableName: "policy_sync_deprecated_policies",
  properties: {
    policy_id: { type: "string", length: 64, primary: true, fieldName: "policy_id" },
    replacement_policy_id: { type: "string", length: 64, nullable: true, fieldName: "replacement_policy_id" },
    deprecated_on: { type: "string", length: 32, fieldName: "deprecated_on" },
  },
});

/** Dependencies of policy-sync. */
export interface PolicySyncDeps {
  bus: CommandBus;
  db: Database;
  logger: Logger;
  /** Where courses go when a deprecated policy names no replacement. */
  defaultPolicyId?: string | undefined;
}

/**
 * PolicyDeprecated → ChangeCoursePolicy for every active course on a deprecated policy. Its tables are
 * only an index of candidates, kept with idempotent upserts (a process manager has no transaction and
 * keeps them through a replay); whether and where a course moves is decided from the aggregates' own
 * committed state, so a stale index never moves a course that has left the deprecated policy.
 */
export function policySync(deps: PolicySyncDeps): Subscriber {
  const logger = deps.logger.child({ consumer: Consumers.PolicySync });
  const tx = txOf(deps.db);

  const indexCourse = (courseId: string, policyId: string, status: string, version: number) =>
    tx.execute(
      "insert into policy_sync_courses (course_id, policy_id, status, version) values (?, ?, ?, ?) on conflict (course_id) do update set policy_id = excluded.policy_id, status = excluded.status, version = excluded.version where policy_sync_courses.version < excluded.version",
      [courseId, policyId, status, version],
      "run",
    );
  const isDeprecated = async (policyId: string) =>
    Boolean(await tx.execute("select 1 as x from policy_sync_deprecated_policies where policy_id = ?", [policyId], "get"));
  const policy = async (id: string) => (await deps.bus.readState<RefundPolicyState>("RefundPolicy", id)).state;

  /** Where a course on `policyId` must go: undefined when it may stay, null when there is nowhere to go. */
  async function destination(policyId: string): Promise<string | null | undefined> {
    let current = await policy(policyId);
    if (current?.status !== "deprecated") return undefined;
    // Replacements may themselves be deprecated by now: follow the chain to an active policy.
    const seen = new Set([policyId]);
    for (;;) {
      let next = current.replacement_policy_id ?? deps.defaultPolicyId ?? null;
      // Replacements that lead back (two policies deprecated at once, each naming the other): the default, if it is elsewhere.
      if (next !== null && seen.has(next)) next = deps.defaultPolicyId !== undefined && !seen.has(deps.defaultPolicyId) ? deps.defaultPolicyId : null;
      if (next === null) return null;
      seen.add(next);
      const state = await policy(next);
      if (state === null) return null;
      if (state.status === "active") return next;
      current = state;
    }
  }

  /**
   * Moves a course off a deprecated policy, if it is on one and there is somewhere to go. With nowhere to go
   * it is marked `stranded` in the index (until an event of its own changes it): a deprecation only ever
   * takes destinations away, so later ones cannot give it one, and the walk of every PolicyDeprecated
   * skips it — it read every such course again, and warned for each, on every deprecation of any policy
   * (two cheap requests made N reads and N warnings; client-driven volume audit). With a default policy
   * configured the walk still takes them (a default set since may take them in). Says "stranded" so the
   * walk can count them for its one line.
   */
  async function move(courseId: string, cause: EnvelopeBase, alone = true): Promise<"stranded" | undefined> {
    const { state: course, version } = await deps.bus.readState<CourseState>("Course", courseId);
    if (course === null) return undefined;
    await indexCourse(courseId, course.policy_id, course.status, version);
    if (course.status !== "active") return undefined;
    const to = await destination(course.policy_id);
    if (to === undefined) return undefined;
    if (to === null) {
      await tx.execute("update policy_sync_courses set status = ? where course_id = ? and version = ? and status = ?", [STRANDED, courseId, version, "active"], "run");
      if (alone) logger.warn({ course_id: courseId, policy_id: course.policy_id, event_id: cause.event_id }, "deprecated policy has no replacement and no default is configured; the course stays");
      return "stranded";
    }
    const reply = await issueCommand(deps.bus, logger, {
      context: "courses",
      type: "ChangeCoursePolicy",
      aggregateId: courseId,
      body: { new_policy_id: to },
      idempotencyKey: idempotencyKeyOf(cause.event_id, courseId),
      correlationId: cause.correlation_id,
      causationId: cause.event_id,
    });
    if (reply) await indexCourse(courseId, to, course.status, reply.aggregate_version);
    return undefined;
  }

  return {
    name: Consumers.PolicySync,
    handles: { courses: ["CourseCreated", "CoursePolicyChanged", "CourseDeprecated"], policies: ["PolicyDeprecated"] },
    async react(raw) {
      const e = typedEvent(raw);
      switch (e.event_type) {
        case "CourseCreated":
        case "CoursePolicyChanged": {
          const policyId = e.event_type === "CourseCreated" ? e.payload.policy_id : e.payload.new_policy_id;
          await indexCourse(e.payload.course_id, policyId, "active", e.aggregate_version);
          // The policy may have been deprecated while this event was on its way (the streams race).
          if (await isDeprecated(policyId)) await move(e.payload.course_id, e);
          return;
        }
        case "CourseDeprecated":
          await tx.execute("update policy_sync_courses set status = ?, version = ? where course_id = ? and version < ?", ["deprecated", e.aggregate_version, e.payload.course_id, e.aggregate_version], "run");
          return;
        case "PolicyDeprecated": {
          await tx.execute(
            "insert into policy_sync_deprecated_policies (policy_id, replacement_policy_id, deprecated_on) values (?, ?, ?) on conflict (policy_id) do nothing",
            [e.payload.policy_id, e.payload.replacement_policy_id, e.occurred_on],
            "run",
          );
          // Every course still on any deprecated policy, not only this one: a move that lost a race
          // with another deprecation is retried here, so the index converges. Read a page at a time and
          // moved a few at a time: a policy may have thousands of courses (and courses with nowhere to
          // go stay in this set for good), which must neither sit in memory at once nor flood mailboxes.
          let failure: { err: unknown } | undefined;
          let stranded = 0;
          // Stranded ones only where a default policy may take them now.
          const statuses = deps.defaultPolicyId === undefined ? ["active"] : ["active", STRANDED];
          for (let after = ""; ; ) {
            const page = await tx.execute<{ course_id: string }[]>(
              `select c.course_id from policy_sync_courses c join policy_sync_deprecated_policies d on d.policy_id = c.policy_id where c.status in (${statuses.map(() => "?").join(", ")}) and c.course_id > ? order by c.course_id limit ?`,
              [...statuses, after, STRANDED_PAGE],
              "all",
            );
            if (page.length === 0) break;
            await eachAtMost(page, MOVES_AT_ONCE, async (r) => {
              if ((await move(r.course_id, e, false)) === "stranded") stranded++;
            }).catch((err: unknown) => (failure ??= { err }));
            after = page.at(-1)!.course_id;
          }
          if (stranded > 0) logger.warn({ policy_id: e.payload.policy_id, event_id: e.event_id, stranded }, "courses on a deprecated policy with no replacement and no default configured stay where they are");
          if (failure) throw failure.err;
          return;
        }
      }
    },
  };
}

