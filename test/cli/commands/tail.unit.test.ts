import { describe, expect, it } from "vitest";
import { tailTargets } from "../../../src/cli/commands/tail.js";

describe("tail filters", () => {
  it("reads a context's stream, or each stream a subject can match, narrowed to its context", () => {
    expect(tailTargets(undefined).map((t) => t.filter)).toEqual(["events.users.>", "events.courses.>", "events.policies.>", "events.orders.>", "events.access.>"]);
    expect(tailTargets("orders")).toEqual([{ stream: "EVENTS_ORDERS", filter: "events.orders.>" }]);
    expect(tailTargets("events.access.*.acc_1")).toEqual([{ stream: "EVENTS_ACCESS", filter: "events.access.*.acc_1" }]);
    expect(tailTargets("events.*.OrderPaid.>").map((t) => `${t.stream} ${t.filter}`)).toContain("EVENTS_ORDERS events.orders.OrderPaid.>");
  });

  it("refuses what is not a subject within events.>", () => {
    for (const bad of ["cmd.orders.>", "events", "events.orders.>.x", "events..x", "events.ord*", "shop"]) expect(() => tailTargets(bad), bad).toThrow(/a filter is a context|unknown context/);
    // Event subjects have four tokens: fewer without a closing `>`, or more, match nothing (it tailed nothing for ever).
    for (const bad of ["events.orders", "events.*", "events.users.UserRegistered", "events.users.A.b.c", "events.users.A.b.>"]) expect(() => tailTargets(bad), bad).toThrow(/a filter is a context/);
    for (const good of ["events.>", "events.users.>", "events.users.UserRegistered.>", "events.*.OrderPaid.*"]) expect(() => tailTargets(good), good).not.toThrow();
  });
});
