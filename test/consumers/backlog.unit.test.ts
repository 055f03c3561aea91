/**
 * When a projection's backlog holds commands back (src/consumers/backlog.ts): only once it has caught
 * up, only while it is over the limit, and never once it has applied nothing for LAG_STALLED_MS.
 */
import { describe, expect, it } from "vitest";
import { LAG_STALLED_MS, ReaderBacklog } from "../../src/consumers/backlog.js";

const LIMIT = 100;

/** A reader opened at t=0 with `pending` undelivered events, then `deliveries` deliveries at t=1 each leaving `after` on the server. */
function given(pending: number, deliveries = 0, after = 0): ReaderBacklog {
  const b = new ReaderBacklog(LIMIT, 0, pending);
  for (let i = 0; i < deliveries; i++) b.delivered(after, 1);
  return b;
}

describe("ReaderBacklog", () => {
  it("counts the server's undelivered events and the delivered ones not yet applied", () => {
    const b = given(0, 30, 500);
    expect(b.behind).toBe(530);
    b.finished(20, 2);
    expect(b.behind).toBe(510);
    b.finished(50, 3); // never below zero: a batch handed back is counted as finished once
    expect(b.behind).toBe(500);
  });

  it("holds commands back while a reader that was caught up is over the limit and progressing", () => {
    const b = given(0, 1, 250);
    expect(b.holds(2)).toBe(true);
    b.finished(1, 10);
    expect(b.holds(11)).toBe(true);
    b.delivered(60, 12);
    b.finished(1, 13);
    expect(b.behind).toBe(60);
    expect(b.holds(14)).toBe(false);
  });

  it("does not hold commands back for a reader replaying from far behind, until it has caught up once", () => {
    const b = given(50_000, 256, 49_000);
    expect(b.holds(2)).toBe(false);
    b.finished(256, 3);
    b.delivered(10, 4); // caught up
    b.finished(1, 5);
    b.delivered(5_000, 6); // and fallen behind again under load
    expect(b.holds(7)).toBe(true);
  });

  it("lets go of commands once a reader has applied nothing for LAG_STALLED_MS", () => {
    const b = given(0, 1, 5_000);
    expect(b.holds(1 + LAG_STALLED_MS)).toBe(true);
    expect(b.holds(2 + LAG_STALLED_MS)).toBe(false);
    b.finished(1, 3_000); // it moves again: held again
    b.delivered(4_000, 3_001);
    expect(b.holds(3_002)).toBe(true);
  });

  it("does not take a failed batch, handed back for redelivery, for progress", () => {
    const b = given(0, 10, 500);
    b.finished(10, undefined);
    expect(b.behind).toBe(500);
    expect(b.holds(2 + LAG_STALLED_MS)).toBe(false);
  });

  it("counts the time without progress from the first delivery after a pause, not from the batch before it", () => {
    const b = given(0, 1, 0);
    b.finished(1, 10);
    // Idle for a minute, then a burst.
    b.delivered(900, 60_000);
    expect(b.holds(60_001)).toBe(true);
  });
});
