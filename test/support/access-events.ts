/**
 * Contract-valid access events as the outbox relay publishes them (envelope as MessagePack, the
 * contract's headers, `Nats-Msg-Id` = event_id), fabricated for tests and benches that need more of
 * them, or faster, than the command path produces.
 */
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import { v7 as uuidv7 } from "uuid";
import { encodeMsgPack, eventSubject, type EventType } from "../../contracts/index.js";

/** One event ready to publish. */
export interface AccessEventMessage {
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs;
}

/** Builds one event of access record `ids.access_id` at `version`; `extra` completes the payload. */
export function accessEventMessage(type: EventType, ids: { access_id: string; user_id: string; course_id: string }, version: number, extra: Record<string, unknown> = {}): AccessEventMessage {
  const event_id = uuidv7();
  const envelope = {
    event_id,
    event_type: type,
    event_version: 1,
    occurred_on: new Date().toISOString(),
    aggregate_type: "AccessRecord",
    aggregate_id: ids.access_id,
    aggregate_version: version,
    correlation_id: event_id,
    causation_id: null,
    payload: { ...ids, ...extra },
  };
  const h = natsHeaders();
  h.set("Nats-Msg-Id", event_id);
  h.set("Content-Type", "application/msgpack");
  h.set("Event-Type", type);
  h.set("Event-Version", "1");
  return { subject: eventSubject("access", type, ids.access_id), data: encodeMsgPack(envelope), headers: h };
}
