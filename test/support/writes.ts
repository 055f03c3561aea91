/** Aggregate writes as the command bus hands them to the group-commit writer, for writer and relay tests. */
import { encodeMsgPack } from "../../contracts/index.js";
import type { AggregateWrite } from "../../src/persistence/index.js";

/**
 * A User write of `version` with one UserProfileUpdated event `eventId`, published to
 * `events.<context>.UserProfileUpdated.<id>`; its body carries the ids and the version.
 */
export function profileWrite(id: string, version: number, eventId: string, context = "users"): AggregateWrite {
  const envelope = { event_id: eventId, aggregate_id: id, aggregate_version: version };
  return {
    aggregateType: "User",
    aggregateId: id,
    baseVersion: version - 1,
    version,
    state: {},
    now: new Date().toISOString(),
    events: [
      {
        event_id: eventId,
        event_type: "UserProfileUpdated",
        event_version: 1,
        occurred_on: new Date().toISOString(),
        aggregate_version: version,
        correlation_id: "c",
        causation_id: null,
        payload: {},
        subject: `events.${context}.UserProfileUpdated.${id}`,
        body: encodeMsgPack(envelope),
      },
    ],
  };
}
