/** The Course aggregate: a catalog entry, its price and the refund policy it follows (CONTRACT.md §2–§3). */
import { domainEvent, errors, type DomainEvent, type Money, type QueryResult } from "../../contracts/index.js";
import type { Decider, RecordedEvent } from "../decider.js";
import { required } from "../facts.js";

/** A course's lifecycle status; deprecation is irreversible. */
export const CourseStatus = { Active: "active", Deprecated: "deprecated" } as const;
/** A course's lifecycle status. */
export type CourseStatus = (typeof CourseStatus)[keyof typeof CourseStatus];

/** A course's state; `price` null means the course is not for sale. */
export type CourseState = {
  course_id: string;
  title: string;
  description: string;
  price: Money | null;
  instructor_id: string;
  policy_id: string;
  status: CourseStatus;
};

/**
 * Facts the runtime supplies. CreateCourse (for `body.policy_id`) and ChangeCoursePolicy (for
 * `body.new_policy_id`) need `policy`: that refund policy's current status, or `null` when no such
 * policy exists. UpdateCourse and DeprecateCourse need none.
 */
export type CourseFacts = { policy?: { status: "active" | "deprecated" } | null };

type CourseCommand = "CreateCourse" | "UpdateCourse" | "DeprecateCourse" | "ChangeCoursePolicy";
type CourseEvent = "CourseCreated" | "CourseUpdated" | "CourseDeprecated" | "CoursePolicyChanged";

const samePrice = (a: Money | null, b: Money | null): boolean =>
  a === null || b === null ? a === b : a.amount === b.amount && a.currency === b.currency;

/** Throws unless the policy a course is to follow exists and is active. */
function assertPolicyUsable(policyId: string, facts: CourseFacts): void {
  const policy = required(facts.policy, "policy");
  if (policy === null) throw errors.ruleViolated(`policy ${policyId} does not exist`, { policy_id: policyId });
  if (policy.status !== "active") throw errors.ruleViolated(`policy ${policyId} is deprecated`, { policy_id: policyId });
}

function assertActive(state: CourseState): void {
  if (state.status === CourseStatus.Deprecated) throw errors.ruleViolated(`course ${state.course_id} is deprecated`);
}

/** The Course decider. */
export const courseDecider: Decider<CourseState, CourseCommand, CourseEvent, CourseFacts> = {
  aggregateType: "Course",
  commands: ["CreateCourse", "UpdateCourse", "DeprecateCourse", "ChangeCoursePolicy"],

  decide(command, state, facts) {
    const id = command.aggregate_id;
    switch (command.type) {
      case "CreateCourse": {
        if (state) throw errors.conflict(`course ${id} already exists`);
        const { title, instructor_id, policy_id, description, price } = command.body;
        assertPolicyUsable(policy_id, facts);
        const events: DomainEvent<CourseEvent>[] = [domainEvent("CourseCreated", { course_id: id, title, instructor_id, policy_id })];
        // CourseCreated has no description or price, so they travel in a CourseUpdated right behind it.
        if (description !== undefined || price !== undefined) {
          events.push(domainEvent("CourseUpdated", { course_id: id, title, description: description ?? "", price: price ?? null }));
        }
        return events;
      }
      case "UpdateCourse": {
        if (!state) throw errors.notFound(`course ${id} does not exist`);
        assertActive(state);
        const { title = state.title, description = state.description } = command.body;
        const price = command.body.price === undefined ? state.price : command.body.price;
        if (title === state.title && description === state.description && samePrice(price, state.price)) return [];
        return [domainEvent("CourseUpdated", { course_id: id, title, description, price })];
      }
      case "DeprecateCourse": {
        if (!state) throw errors.notFound(`course ${id} does not exist`);
        if (state.status === CourseStatus.Deprecated) return [];
        return [domainEvent("CourseDeprecated", { course_id: id, title: state.title })];
      }
      case "ChangeCoursePolicy": {
        if (!state) throw errors.notFound(`course ${id} does not exist`);
        assertActive(state);
        const next = command.body.new_policy_id;
        if (next === state.policy_id) return [];
        assertPolicyUsable(next, facts);
        return [domainEvent("CoursePolicyChanged", { course_id: id, old_policy_id: state.policy_id, new_policy_id: next })];
      }
    }
  },

  evolve(state, event: RecordedEvent<CourseEvent>) {
    switch (event.event_type) {
      case "CourseCreated": {
        const p = event.payload;
        return {
          course_id: p.course_id,
          title: p.title,
          description: "",
          price: null,
          instructor_id: p.instructor_id,
          policy_id: p.policy_id,
          status: CourseStatus.Active,
        };
      }
      case "CourseUpdated": {
        const { title, description, price } = event.payload;
        return { ...state!, title, description, price: price === null ? null : { ...price } };
      }
      case "CourseDeprecated":
        return { ...state!, status: CourseStatus.Deprecated };
      case "CoursePolicyChanged":
        return { ...state!, policy_id: event.payload.new_policy_id };
    }
  },
};

/** The GetCourse view of a course. */
export const courseView = (s: CourseState, version: number): QueryResult<"GetCourse"> => ({
  ...s,
  price: s.price === null ? null : { ...s.price },
  version,
});
