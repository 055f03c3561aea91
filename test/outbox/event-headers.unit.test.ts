/** An event publish's headers (event-headers.ts): the same bytes on the wire as nats-core's own headers, the same answers. */
import { Match } from "@nats-io/nats-core";
import { describe, expect, it } from "vitest";
import { eventHeaders, viaNatsCore, type HeaderFields } from "../../src/outbox/event-headers.js";

const encoded = (h: unknown) => Buffer.from((h as { encode(): Uint8Array }).encode()).toString("utf8");

const row: HeaderFields = {
  event_type: "UserProfileUpdated",
  event_version: 1,
  event_id: "0190b3c4-5d6e-7f01-8a2b-3c4d5e6f7081",
  traceparent: null,
  tracestate: null,
};
const traced: HeaderFields = { ...row, traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" };

describe("eventHeaders", () => {
  it("writes the block nats-core writes, names in the same order, Nats-Msg-Id last", () => {
    // The block's first lines are written once per type and version: other versions and non-ASCII values still match.
    const others = [{ ...row, event_version: 2 }, { ...traced, event_id: "id-é-ü", tracestate: "k=v€" }, { ...row, event_type: "CourseCreated", traceparent: "" }];
    for (const r of [row, traced, { ...traced, tracestate: null }, { ...row, tracestate: "ignored without a traceparent" }, ...others]) {
      expect(encoded(eventHeaders(r))).toBe(encoded(viaNatsCore(r)));
    }
    expect(encoded(eventHeaders(traced))).toBe(
      "NATS/1.0\r\nContent-Type: application/msgpack\r\nEvent-Type: UserProfileUpdated\r\nEvent-Version: 1\r\n" +
        `traceparent: ${traced.traceparent}\r\ntracestate: ${traced.tracestate}\r\nNats-Msg-Id: ${row.event_id}\r\n\r\n`,
    );
  });

  it("answers every MsgHdrs question as nats-core's object does", () => {
    const [fast, slow] = [eventHeaders(traced), viaNatsCore(traced)];
    expect(fast.get("Nats-Msg-Id")).toBe(row.event_id);
    expect(fast.get("event-type", Match.IgnoreCase)).toBe("UserProfileUpdated");
    expect(fast.has("Event-Version")).toBe(true);
    expect(fast.has("Absent")).toBe(false);
    expect(fast.keys()).toEqual(slow.keys());
    expect([...fast]).toEqual([...slow]);
    expect([fast.hasError, fast.code, fast.status, fast.description]).toEqual([slow.hasError, slow.code, slow.status, slow.description]);
  });

  it("carries a change made through the MsgHdrs methods to the wire", () => {
    const h = eventHeaders(row);
    h.set("Event-Version", "2");
    h.append("X-Extra", "yes");
    const s = viaNatsCore(row);
    s.set("Event-Version", "2");
    s.append("X-Extra", "yes");
    expect(encoded(h)).toBe(encoded(s));
    expect(encoded(h)).toContain("Event-Version: 2\r\n");
  });

  it("leaves a value nats-core would refuse or trim to nats-core: the same error, the same block", () => {
    expect(() => eventHeaders({ ...row, event_type: "Bad\r\nInjected: yes" })).toThrow(/cannot contain/);
    const padded = { ...traced, tracestate: " padded " };
    expect(encoded(eventHeaders(padded))).toBe(encoded(viaNatsCore(padded)));
    expect(encoded(eventHeaders(padded))).toContain("tracestate: padded\r\n");
  });
});
