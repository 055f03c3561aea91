/** typedEvent: what an event type adds to the common envelope (version, aggregate type, payload) is checked; a breach is poison. */
import { describe, expect, it } from "vitest";
import { EventSchemas, type EnvelopeBase } from "../../contracts/index.js";
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
    expect(poison({ ...e, event_version: 7 })).toMatch(/breaks the contract: event_version /);
    expect(poison({ ...e, aggregate_type: "User" })).toMatch(/breaks the contract: aggregate_type /);
    expect(poison({ ...e, event_type: "CourseRenamed" })).toBe("unknown event type CourseRenamed");
    expect(poison({ ...e, event_type: "constructor" })).toBe("unknown event type constructor");
  });
});
