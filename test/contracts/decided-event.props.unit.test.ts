/**
 * The command path checks what a decider chose of each event — its type and its payload — not the whole
 * envelope (contracts/events.ts, decidedEventProblem): the rest is the runtime's own. Here the two checks
 * must agree on every envelope whose runtime fields are valid, whatever the payload: valid, valid with a
 * field taken away, added or changed to anything, or anything at all. And a type of another context, or
 * none the contract knows, is refused.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EVENT_TYPES, EventContexts, EventSchemas, decidedEventProblem, type Context, type EventType } from "../../contracts/index.js";
import { validEnvelope, validPayload } from "../support/arbitraries.js";
import { assertProperty, fuzzSummary } from "../support/fuzz.js";
import { payloadSamples } from "./samples.js";

fuzzSummary(import.meta.url);

/** A payload near `valid`, or anything: what a buggy decider might put in an event. */
function nearOrAnything(type: EventType): fc.Arbitrary<unknown> {
  const near = validPayload(type).chain((p) => {
    const valid = p as Record<string, unknown>;
    const keys = Object.keys(valid);
    return fc.oneof(
      fc.constant(valid),
      // A field taken away.
      fc.constantFrom(...keys).map((k) => Object.fromEntries(Object.entries(valid).filter(([key]) => key !== k))),
      // A field the contract does not name.
      fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.anything()).map(([k, v]) => ({ ...valid, [k]: v })),
      // A field changed to anything.
      fc.tuple(fc.constantFrom(...keys), fc.anything()).map(([k, v]) => ({ ...valid, [k]: v })),
    );
  });
  return fc.oneof({ weight: 4, arbitrary: near }, { weight: 1, arbitrary: fc.anything() });
}

const CASES = fc.constantFrom(...EVENT_TYPES).chain((type) => fc.tuple(fc.constant(type), validEnvelope(type), nearOrAnything(type)));

describe("decidedEventProblem: the command path's check of a decided event", () => {
  it("agrees with the whole envelope's schema on every envelope whose runtime fields are valid", () => {
    let accepted = 0;
    let refused = 0;
    assertProperty(
      fc.property(CASES, ([type, envelope, payload]) => {
        const whole = EventSchemas[type].safeParse({ ...envelope, payload }).success;
        const decided = decidedEventProblem(EventContexts[type], { event_type: type, payload }) === undefined;
        expect(decided).toBe(whole);
        if (whole) accepted++;
        else refused++;
      }),
      400,
    );
    // Both verdicts were reached: the property compared acceptances and refusals alike.
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });

  it("accepts each type's sample from its own context, and refuses it from any other, and a type the contract does not know", () => {
    const contexts = [...new Set(Object.values(EventContexts))] as Context[];
    for (const type of EVENT_TYPES) {
      const e = { event_type: type, payload: payloadSamples[type] };
      expect(decidedEventProblem(EventContexts[type], e), type).toBeUndefined();
      for (const other of contexts.filter((c) => c !== EventContexts[type])) {
        expect(decidedEventProblem(other, e)).toBe(`${type} is an event of ${EventContexts[type]}, not of ${other}`);
      }
    }
    expect(decidedEventProblem("users", { event_type: "UserDeleted", payload: {} })).toBe("unknown event type UserDeleted");
    expect(decidedEventProblem("users", { event_type: "__proto__", payload: {} })).toBe("unknown event type __proto__");
  });

  it("says what is wrong with a payload", () => {
    const problem = decidedEventProblem("users", { event_type: "UserRegistered", payload: { user_id: "user-42", email: "ada@example.com" } });
    expect(problem).toContain("name");
  });
});
