/**
 * Writes as the version-1 code made them, before CourseAccessGranted version 2: the aggregate write
 * its command bus handed to the group-commit writer — a version-1 envelope without `order_id`, and a
 * snapshot without `order_id` — so a running service stores it in its own event log and its own relay
 * publishes it with the headers it gives every row (`Event-Version: 1`, from the row's version).
 */
import { v7 as uuidv7 } from "uuid";
import { deriveAccessId, encodeMsgPack, eventSubject } from "../../contracts/index.js";
import type { AggregateWrite } from "../../src/persistence/index.js";

/** A first, open-ended grant of `courseId` to `userId`, exactly as the version-1 code committed it. */
export function version1GrantWrite(userId: string, courseId: string, correlationId: string): AggregateWrite {
  const access_id = deriveAccessId(userId, courseId);
  const now = new Date().toISOString();
  const envelope = {
    event_id: uuidv7(),
    event_type: "CourseAccessGranted",
    event_version: 1,
    occurred_on: now,
    aggregate_type: "AccessRecord",
    aggregate_id: access_id,
    aggregate_version: 1,
    correlation_id: correlationId,
    causation_id: correlationId,
    payload: { access_id, user_id: userId, course_id: courseId, expires_at: null },
  };
  const { aggregate_type: _type, aggregate_id: _id, ...row } = envelope;
  return {
    aggregateType: "AccessRecord",
    aggregateId: access_id,
    baseVersion: 0,
    version: 1,
    // The version-1 AccessRecordState: no order_id.
    state: { access_id, user_id: userId, course_id: courseId, status: "active", progress: 0, completed: false, expires_at: null },
    now,
    events: [{ ...row, subject: eventSubject("access", "CourseAccessGranted", access_id), body: encodeMsgPack(envelope) }],
  };
}
