/** typedEvent: what an event type adds to the common envelope (version, aggregate type, payload) is checked; a breach is poison. */
import { describe, expect, it } from "vitest";
import { EventSchemas, deriveAccessId, type EnvelopeBase } from "../../contracts/index.js";
import { PoisonEventError } from "../../src/consumers/index.js";
import { typedEvent } from "../../src/projections/typed-event.js";
import { envelope } from "./fixtures.js";

const updated = () =>
  envelope("CourseUpdated", "crs_1", 2, { course_id: "crs_1", title: "T", description: "D", price: { amount: 1900, currency: "EUR" } });

const poison = (e: unknown): string => {
  try {
    typedEvent(e as EnvelopeBase);
  } catch (err) {
    expect(err).toBeInstanceOf(PoisonEventError);
    return (err as Error).message;
  }
  throw new Error("not refused");
};

describe("typedEvent", () => {
  it("returns the envelope as its type's full schema parses it", () => {
    const e = updated();
    expect(typedEvent(e)).toEqual(EventSchemas.CourseUpdated.parse(e));
  });

  it("refuses as poison a payload, version or aggregate type its event type does not allow, and an unknown type", () => {
    const e = updated();
    expect(poison({ ...e, payload: { ...e.payload, title: 5 } })).toMatch(/^CourseUpdated .* breaks the contract: payload\.title /);
    expect(poison({ ...e, payload: { ...e.payload, extra: 1 } })).toMatch(/breaks the contract: payload/);
    expect(poison({ ...e, event_version: 0 })).toMatch(/breaks the contract: event_version /);
    expect(poison({ ...e, aggregate_type: "User" })).toMatch(/breaks the contract: aggregate_type /);
    expect(poison({ ...e, event_type: "CourseRenamed" })).toBe("unknown event type CourseRenamed");
    expect(poison({ ...e, event_type: "constructor" })).toBe("unknown event type constructor");
  });

  it("reads a version newer than it knows (a rolling upgrade) as the newest it knows: known fields checked, new ones dropped", () => {
    const e = updated();
    const newer = typedEvent({ ...e, event_version: 2, payload: { ...e.payload, language: "de" } } as EnvelopeBase);
    expect(newer.event_version).toBe(2);
    expect(newer.payload).toEqual(e.payload);
    const access_id = deriveAccessId("u1", "c1");
    const granted = envelope("CourseAccessGranted", access_id, 1, { access_id, user_id: "u1", course_id: "c1", expires_at: null, order_id: "o1" });
    expect(typedEvent({ ...granted, event_version: 3, payload: { ...granted.payload, seat: 4 } } as EnvelopeBase).payload).toEqual(granted.payload);
    // A newer version still carries every field of the known one (versions only add fields): else poison.
    expect(poison({ ...granted, event_version: 3, payload: { ...granted.payload, order_id: undefined } })).toMatch(/^CourseAccessGranted .* breaks the contract: payload\.order_id /);
    expect(poison({ ...e, event_version: 2, payload: { ...e.payload, title: 5 } })).toMatch(/breaks the contract: payload\.title /);
  });
});
