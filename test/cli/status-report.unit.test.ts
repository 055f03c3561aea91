import { describe, expect, it } from "vitest";
import type { InstanceStatus } from "../../src/api/instance-status.js";
import { problemsOf, ranges, type StatusReport } from "../../src/cli/status-report.js";

const limits = { maxLag: 100, maxOutboxAgeMs: 30_000, maxTimerDelayMs: 60_000 };
const streams = ["EVENTS_ACCESS", "EVENTS_COURSES", "EVENTS_ORDERS", "EVENTS_POLICIES", "EVENTS_USERS"].map((name) => ({ name, messages: 1, bytes: 1, replicas: 1 }));
const instance = (id: string, partitions: number[], active: string[]): InstanceStatus => ({
  instance: id,
  version: "0.1.0",
  roles: ["commands", "consumers"],
  started_at: "2026-01-01T00:00:00.000Z",
  partitions,
  consumers: { known: ["audit", "catalog"], active },
  outbox: { pending: 0, oldest_age_ms: null },
  timers: { pending: 0, overdue: 0, oldest_overdue_ms: null },
  dead_letters: {},
});
const consumer = (name: string, over: Partial<StatusReport["consumers"][number]> = {}) => ({ name, nerve: true, streams: ["EVENTS_ACCESS"], pending: 0, ack_pending: 0, dead_letters: 0, runs_on: ["a"], ...over });
const report = (over: Partial<StatusReport> = {}): StatusReport => ({
  healthy: true,
  problems: [],
  nats_url: "nats://x",
  checked_at: "2026-01-01T00:01:00.000Z",
  instances: [instance("a", [], ["audit", "catalog"])],
  partitions: { total: 64, unowned: [] },
  streams,
  consumers: [consumer("audit"), consumer("catalog")],
  outbox: { pending: 0, oldest_age_ms: null },
  timers: { pending: 0, overdue: 0, oldest_overdue_ms: null },
  ...over,
});

describe("status health rules", () => {
  it("finds nothing wrong in a healthy report", () => {
    expect(problemsOf(report(), limits, 1000)).toEqual([]);
  });

  it("names each broken rule", () => {
    const r = report({
      streams: streams.filter((s) => s.name !== "EVENTS_ORDERS"),
      partitions: { total: 64, unowned: [3, 4, 5, 9] },
      consumers: [consumer("audit", { runs_on: [], dead_letters: 2 }), consumer("catalog", { pending: 90, ack_pending: 11 }), consumer("bi", { nerve: false, pending: 1e6, runs_on: [] })],
      outbox: { pending: 7, oldest_age_ms: 45_000 },
      timers: { pending: 3, overdue: 1, oldest_overdue_ms: 61_000 },
    });
    expect(problemsOf(r, limits, 1000)).toEqual([
      "stream EVENTS_ORDERS is missing",
      "4 of 64 partitions have no owner (3-5,9): their commands get no answer",
      "consumer audit runs on no instance",
      "consumer audit has 2 dead letters",
      "consumer catalog is 101 events behind (limit 100)",
      "outbox not draining: 7 events unpublished, the oldest for 45 s (limit 30 s)",
      "timers not firing: 1 due, the oldest 61 s late (limit 60 s)",
    ]);
  });

  it("names what an instance's relay holds back after a failure", () => {
    const a = { ...instance("a", [], ["audit", "catalog"]), relay: { held_streams: ["EVENTS_ACCESS"], held_aggregates: 2 } };
    const b = { ...instance("b", [], []), relay: { held_streams: [], held_aggregates: 0 } };
    expect(problemsOf(report({ instances: [a, b] }), limits, 1000)).toEqual([
      "instance a holds back EVENTS_ACCESS's events: the stream failed (its log says how; they go out once it answers)",
      "instance a holds back the events of 2 aggregates behind rows JetStream refused (its log names them)",
    ]);
  });

  it("is unhealthy when no instance answers, without blaming partitions or consumers on that", () => {
    const r = report({ instances: [], partitions: { total: 64, unowned: Array.from({ length: 64 }, (_, p) => p) }, consumers: [consumer("audit", { runs_on: [] })], outbox: null, timers: null });
    expect(problemsOf(r, limits, 1500)).toEqual(["no Nerve instance answered nerve.admin.status within 1500 ms"]);
  });

  it("writes partition lists as ranges", () => {
    expect(ranges([0, 1, 2, 3, 7, 9, 10, 63])).toBe("0-3,7,9-10,63");
    expect(ranges([])).toBe("");
  });
});
