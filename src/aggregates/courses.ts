/** Hosting of the Course aggregate: the refund policy's status is read from the policy's actor. */
import { courseDecider, courseView, type CourseFacts, type CourseState } from "../../actors/courses/index.js";
import type { RefundPolicyState } from "../../actors/policies/index.js";
import type { AggregateModule } from "../runtime/index.js";

/** The Courses context. */
export const coursesModule: AggregateModule<CourseState, CourseFacts> = {
  context: "courses",
  aggregateType: "Course",
  decider: courseDecider,
  async facts(command, _state, lookups) {
    const policyId = command.type === "CreateCourse" ? command.body.policy_id : command.type === "ChangeCoursePolicy" ? command.body.new_policy_id : undefined;
    if (!policyId) return {};
    const { state } = await lookups.readState<RefundPolicyState>("RefundPolicy", policyId);
    return { policy: state ? { status: state.status } : null };
  },
  view: (state, version) => courseView(state, version),
};
