import { describe, expect, it } from "vitest";
import { DEV_EXTERNAL_CONSUMERS, loadConfig, parseExternalConsumers } from "../../src/config/index.js";

describe("NERVE_EXTERNAL_CONSUMERS", () => {
  it("is none by default", () => {
    expect(loadConfig({}).NERVE_EXTERNAL_CONSUMERS).toEqual([]);
  });

  it("maps each pair to the stream whose subjects contain its filter; a name may be on several streams", () => {
    expect(parseExternalConsumers(" bi:events.access.> , bi:events.orders.OrderPaid.*,wh:events.access.> ")).toEqual([
      { name: "bi", stream: "EVENTS_ACCESS", filter: "events.access.>" },
      { name: "bi", stream: "EVENTS_ORDERS", filter: "events.orders.OrderPaid.*" },
      { name: "wh", stream: "EVENTS_ACCESS", filter: "events.access.>" },
    ]);
    expect(parseExternalConsumers(DEV_EXTERNAL_CONSUMERS).map((c) => c.stream).sort()).toEqual(["EVENTS_ACCESS", "EVENTS_COURSES", "EVENTS_ORDERS", "EVENTS_POLICIES", "EVENTS_USERS"]);
  });

  it.each([
    ["bi", "must be name:filter"],
    ["analytics:events.access.>", "one of Nerve's own consumers"],
    ["b.i:events.access.>", "the name must match"],
    ["bi:events.>", "within one stream's subjects"],
    ["bi:events.*.X", "within one stream's subjects"],
    ["bi:events.access.>.x", "not a valid subject"],
    // Event subjects have four tokens: these matched none, and their durables silently got nothing.
    ["bi:events.access.ProgressUpdated", "matches no event subject"],
    ["bi:events.access.ProgressUpdated.a.b", "matches no event subject"],
    ["bi:events.access.ProgressUpdated.a.>", "matches no event subject"],
    ["bi:events.access.>,bi:events.access.CourseCompleted.*", "already filters events.access.> on EVENTS_ACCESS"],
  ])("refuses %s at start, naming the pair", (value, why) => {
    expect(() => loadConfig({ NERVE_EXTERNAL_CONSUMERS: value })).toThrow(/NERVE_EXTERNAL_CONSUMERS/);
    expect(() => parseExternalConsumers(value)).toThrow(why);
    expect(() => parseExternalConsumers(value)).toThrow(`"${value.split(",").at(-1)}"`);
  });
});
