/** What the CLI writes to a terminal from elsewhere: nothing the terminal would act on. */
import { describe, expect, it } from "vitest";
import { displaySafe } from "../../src/cli/terminal.js";
import { eventLine } from "../../src/cli/event-line.js";
import { renderStatus } from "../../src/cli/commands/status.js";
import type { StatusReport } from "../../src/cli/status-report.js";
import type { EnvelopeBase } from "../../contracts/index.js";

const ACTS = /[\p{Cc}\p{Bidi_Control}\u2028\u2029]/u;

describe("displaySafe", () => {
  it("writes control, C1, bidirectional and line-separator characters as \\uXXXX, the rest as it is", () => {
    expect(displaySafe("bi\u001b[2J\u001b]0;x\u0007")).toBe("bi\\u001b[2J\\u001b]0;x\\u0007");
    expect(displaySafe("Eve\u009b2J\u202eRED\u2028")).toBe("Eve\\u009b2J\\u202eRED\\u2028");
    expect(displaySafe("Ada Lovelace, café 😀 \u00e9")).toBe("Ada Lovelace, café 😀 \u00e9");
  });
});

describe("the CLI's lines", () => {
  it("an event's payload: C1 and bidirectional controls escaped too (JSON escapes only C0)", () => {
    const e = { occurred_on: "2026-12-05T21:00:00.000Z", event_type: "UserRegistered", aggregate_type: "User", aggregate_id: "evil1", aggregate_version: 1, payload: { name: "Eve\u009b2J\u202eRED\u001b" } } as unknown as EnvelopeBase;
    const line = eventLine(e, "events.users.UserRegistered.evil1");
    expect(line).not.toMatch(ACTS);
    expect(line).toContain("Eve\\u009b2J\\u202eRED");
  });

  it("status: another user's durable name with escape sequences is shown escaped", () => {
    const report: StatusReport = {
      healthy: true,
      problems: [],
      nats_url: "nats://127.0.0.1:4222",
      checked_at: "2026-12-05T21:00:00.000Z",
      instances: [],
      partitions: { total: 64, unowned: [] },
      streams: [{ name: "EVENTS_USERS", messages: 1, bytes: 10, replicas: 1 }],
      consumers: [{ name: "bi\u001b[2J\u001b]0;x\u0007\u009b", nerve: false, streams: ["EVENTS_USERS"], pending: 0, ack_pending: 0, dead_letters: 0, runs_on: [] }],
      outbox: null,
      timers: null,
    };
    const lines = renderStatus(report);
    for (const l of lines) expect(l).not.toMatch(ACTS);
    expect(lines.join("\n")).toContain("bi\\u001b[2J");
  });
});
