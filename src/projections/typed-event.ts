/** Narrows a consumer's envelope to its event type's contract schema; an event that breaks it is poison. */
import { EventSchemas, type EnvelopeBase, type EventEnvelope, type EventType } from "../../contracts/index.js";
import { PoisonEventError } from "../consumers/index.js";

/**
 * Parses an envelope against the schema of its `event_type`. The runner only checks the common
 * envelope, so a payload that breaks the contract arrives here; no retry can fix it, hence poison.
 */
export function typedEvent(event: EnvelopeBase): EventEnvelope {
  const schema = Object.hasOwn(EventSchemas, event.event_type) ? EventSchemas[event.event_type as EventType] : undefined;
  if (!schema) throw new PoisonEventError(`unknown event type ${event.event_type}`);
  const parsed = schema.safeParse(event);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ");
    throw new PoisonEventError(`${event.event_type} ${event.event_id} breaks the contract: ${issues}`);
  }
  return parsed.data as EventEnvelope;
}
