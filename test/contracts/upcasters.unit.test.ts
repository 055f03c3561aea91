import { describe, expect, it } from "vitest";
import { EventSchemas, UpcasterRegistry, upcasters, type Upcaster } from "../../contracts/index.js";
import { envelopeSample } from "./samples.js";
import { thrown } from "../support/thrown.js";

// A fabricated history: version 0 of UserRegistered called the name `full_name`.
const userRegisteredV0: Upcaster = {
  eventType: "UserRegistered",
  from: 0,
  to: 1,
  up: ({ full_name, ...rest }) => ({ ...rest, name: full_name }),
};

function v0Envelope() {
  const { payload, ...envelope } = envelopeSample("UserRegistered");
  return { ...envelope, event_version: 0, payload: { user_id: payload.user_id, email: payload.email, full_name: payload.name } as Record<string, unknown> };
}

describe("UpcasterRegistry", () => {
  it("upcasts a version-0 envelope to one that passes the current schema", () => {
    const registry = new UpcasterRegistry().register(userRegisteredV0);
    const old = v0Envelope();
    expect(EventSchemas.UserRegistered.safeParse(old).success).toBe(false);
    const upcast = registry.upcast(old);
    expect(upcast.event_version).toBe(1);
    expect(upcast.payload).toEqual({ user_id: "user-42", email: "ada@example.com", name: "Ada Lovelace" });
    expect(EventSchemas.UserRegistered.parse(upcast)).toEqual(envelopeSample("UserRegistered"));
  });

  it("leaves the stored envelope untouched (upgraded when read, never rewritten)", () => {
    const old = v0Envelope();
    const before = structuredClone(old);
    new UpcasterRegistry().register(userRegisteredV0).upcast(old);
    expect(old).toEqual(before);
  });

  it("applies a chain of two steps in order", () => {
    const registry = new UpcasterRegistry()
      .register({ eventType: "Fabricated", from: 1, to: 2, up: (p) => ({ ...p, steps: ["1→2"] }) })
      .register({ eventType: "Fabricated", from: 2, to: 3, up: (p) => ({ ...p, steps: [...(p.steps as string[]), "2→3"] }) });
    const upcast = registry.upcast({ event_type: "Fabricated", event_version: 1, payload: { x: 1 } }, 3);
    expect(upcast).toEqual({ event_type: "Fabricated", event_version: 3, payload: { x: 1, steps: ["1→2", "2→3"] } });
  });

  it("throws when a step of the chain is missing", () => {
    const registry = new UpcasterRegistry().register({ eventType: "Fabricated", from: 1, to: 2, up: (p) => p });
    const err = thrown(() => registry.upcast({ event_type: "Fabricated", event_version: 1, payload: {} }, 3));
    expect(err.code).toBe("internal");
    expect(err.message).toContain("from version 2");
    expect(thrown(() => new UpcasterRegistry().upcast(v0Envelope())).code).toBe("internal");
  });

  it("refuses a step that skips versions or goes down", () => {
    expect(thrown(() => new UpcasterRegistry().register({ eventType: "UserRegistered", from: 0, to: 2, up: (p) => p })).code).toBe("internal");
    expect(thrown(() => new UpcasterRegistry().register({ eventType: "UserRegistered", from: 1, to: 0, up: (p) => p })).code).toBe("internal");
  });

  it("refuses the same step twice", () => {
    const registry = new UpcasterRegistry().register(userRegisteredV0);
    expect(thrown(() => registry.register(userRegisteredV0)).message).toContain("twice");
  });

  it("passes a current-version event through unchanged", () => {
    const current = envelopeSample("OrderPaid");
    const registry = new UpcasterRegistry().register(userRegisteredV0);
    expect(registry.upcast(current)).toEqual(current);
    expect(upcasters.upcast(current)).toEqual(current);
  });
});
