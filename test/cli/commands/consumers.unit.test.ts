import { describe, expect, it } from "vitest";
import { replayOutcome } from "../../../src/cli/commands/consumers.js";

describe("replay's last line", () => {
  it("says how many of how many events, and where, when the replay caught up", () => {
    expect(replayOutcome("catalog", { consumer: "catalog", running: false, done: 42, total: 42, instance: "b" })).toBe("replayed 42 of 42 events into catalog on instance b");
    // Empty streams are a real success when an instance says it ran the replay.
    expect(replayOutcome("catalog", { consumer: "catalog", running: false, done: 0, total: 0, instance: "b" })).toBe("replayed 0 of 0 events into catalog on instance b");
  });

  it("claims no success for a status that says nothing ran, a replay stopped short, or a failure", () => {
    // What a service answered from an instance that never ran the replay: it printed "replayed 0 events", exit 0.
    expect(() => replayOutcome("catalog", { consumer: "catalog", running: false, done: 0, total: 0 })).toThrow(/no replay is running and none did anything \(0 of 0 events, no instance named\)/);
    expect(() => replayOutcome("catalog", { consumer: "catalog", running: false, done: 3, total: 9, instance: "b" })).toThrow("replay of catalog stopped on instance b at 3 of 9 events without an error");
    expect(() => replayOutcome("catalog", { consumer: "catalog", running: false, done: 0, total: 9, instance: "b", error: "boom" })).toThrow("replay of catalog failed on instance b: boom");
  });
});
