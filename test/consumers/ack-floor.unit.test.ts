/**
 * The floor a reader of an AckPolicy.All durable may acknowledge: only what it committed itself, and
 * only while every outstanding delivery of the durable is its own.
 */
import { describe, expect, it } from "vitest";
import { AckFloor, type ConsumerPosition } from "../../src/consumers/ack-floor.js";

const fresh: ConsumerPosition = { ackFloorStream: 0, ackFloorDelivery: 0, delivered: 0, ackPending: 0 };

/** Deliveries d1.., of stream sequences `seqs`, in order, from a durable at `start`. */
function given(seqs: number[], start: ConsumerPosition = fresh): AckFloor<string> {
  const f = new AckFloor<string>(start);
  seqs.forEach((s, i) => f.received(start.delivered + i + 1, s, `s${s}`));
  return f;
}

describe("AckFloor", () => {
  it("acks nothing before anything is settled, then the highest settled sequence below every unsettled one", () => {
    const f = given([1, 2, 3, 4]);
    expect(f.next()).toBeUndefined();
    f.done(1);
    f.done(2);
    f.done(4);
    expect(f.next()).toEqual({ streamSeq: 2, deliverySeq: 2, msg: "s2" });
  });

  it("tells which stream sequences it holds, and the highest floor it sent (what a reader must never hand back)", () => {
    const f = given([10, 11, 13]);
    expect([9, 10, 11, 12, 13, 14].map((s) => f.holds(s))).toEqual([false, true, true, false, true, false]);
    expect(f.sentFloor).toBe(0);
    for (const s of [10, 11]) f.done(s);
    f.sent(f.next()!);
    expect(f.sentFloor).toBe(11);
    expect([10, 11, 13].map((s) => f.holds(s))).toEqual([false, false, true]);
    // The server's floor read lower (an older state) does not lower what this reader sent.
    f.reconcile({ ackFloorStream: 9, ackFloorDelivery: 0, delivered: 3, ackPending: 2 });
    expect(f.sentFloor).toBe(11);
  });

  it("forgets what an ack settled and goes on from there", () => {
    const f = given([10, 11, 12]);
    for (const s of [10, 11]) f.done(s);
    f.sent(f.next()!);
    expect(f.held).toBe(1);
    expect(f.acked).toBe(11);
    expect(f.next()).toBeUndefined();
    f.done(12);
    expect(f.next()?.streamSeq).toBe(12);
  });

  it("keeps stream sequences beyond 2^32 apart and in order (held in an array by stream sequence, not a Map)", () => {
    const base = 2 ** 32 - 3;
    const f = given([base, base + 1, base + 2, base + 3, base + 4], { ackFloorStream: base - 1, ackFloorDelivery: 7, delivered: 7, ackPending: 0 });
    for (const s of [base, base + 1, base + 2, base + 4]) f.done(s);
    const ack = f.next()!;
    expect(ack).toEqual({ streamSeq: base + 2, deliverySeq: 10, msg: `s${base + 2}` });
    f.sent(ack);
    expect(f.held).toBe(2);
    expect(f.acked).toBe(base + 2);
    f.done(base + 3);
    expect(f.next()).toEqual({ streamSeq: base + 4, deliverySeq: 12, msg: `s${base + 4}` });
  });

  it("keeps its deliveries in stream order through thousands of acks, with a lower sequence arriving late", () => {
    const f = new AckFloor<string>(fresh);
    let delivery = 0;
    for (let s = 1; s <= 3000; s++) if (s !== 1500) f.received(++delivery, s, `s${s}`);
    f.received(++delivery, 1500, "s1500");
    expect(f.held).toBe(3000);
    for (let s = 1; s <= 3000; s += 100) {
      for (let k = s; k < s + 100; k++) if (k !== 1500) f.done(k);
      const ack = f.next();
      if (s + 99 < 1500) {
        expect(ack?.streamSeq).toBe(s + 99);
        f.sent(ack!);
        expect(f.held).toBe(3000 - (s + 99));
      } else if (s === 1401) {
        expect(ack?.streamSeq).toBe(1499);
        f.sent(ack!);
      } else expect(ack).toBeUndefined();
    }
    // Everything above 1500 waits for it.
    expect(f.held).toBe(1501);
    f.done(1500);
    expect(f.next()).toEqual({ streamSeq: 3000, deliverySeq: 2999, msg: "s3000" });
    f.sent(f.next()!);
    expect(f.held).toBe(0);
  });

  it("never acks past a delivery that failed, until its redelivery is settled", () => {
    const f = given([1, 2, 3]);
    f.done(1);
    f.done(3); // 2 failed: nak'ed, held
    expect(f.next()?.streamSeq).toBe(1);
    f.sent(f.next()!);
    f.received(4, 2, "s2 again");
    f.done(2);
    expect(f.next()).toEqual({ streamSeq: 3, deliverySeq: 3, msg: "s3" });
  });

  it("acks with a delivery the server takes: its delivery sequence above the last ack's", () => {
    // s1 redelivered as d4 after s2 and s3: acking s1 (d4) first puts the server's delivery floor at 4.
    const f = given([1, 2, 3]);
    f.received(4, 1, "s1 again");
    f.done(1);
    f.sent(f.next()!);
    expect(f.acked).toBe(1);
    f.done(2);
    f.done(3);
    // d2 and d3 are under the delivery floor (the server would ignore them): nothing to send yet.
    expect(f.next()).toBeUndefined();
    f.received(5, 4, "s4");
    f.done(4);
    expect(f.next()).toEqual({ streamSeq: 4, deliverySeq: 5, msg: "s4" });
  });

  it("holds every ack once a delivery went elsewhere (a gap in the delivery sequence)", () => {
    const f = given([1, 2]);
    f.received(4, 4, "s4"); // d3 (s3) went to another reader
    for (const s of [1, 2, 4]) f.done(s);
    expect(f.clean).toBe(false);
    expect(f.next()).toBeUndefined();
  });

  it("starts holding when the durable has deliveries outstanding, and resumes when they are all its own", () => {
    // A crashed reader left s1..s3 outstanding (d1..d3); they come back to this reader as d4..d6 after ack_wait.
    const start: ConsumerPosition = { ackFloorStream: 0, ackFloorDelivery: 0, delivered: 3, ackPending: 3 };
    const f = given([4, 5], start);
    f.done(4);
    f.done(5);
    expect(f.next()).toBeUndefined();
    expect(f.reconcile({ ackFloorStream: 0, ackFloorDelivery: 0, delivered: 5, ackPending: 5 })).toBe(false);
    f.received(6, 1, "s1 again");
    f.received(7, 2, "s2 again");
    f.received(8, 3, "s3 again");
    // Info read while d8 was on its way does not match, and changes nothing.
    expect(f.reconcile({ ackFloorStream: 0, ackFloorDelivery: 0, delivered: 9, ackPending: 6 })).toBe(false);
    expect(f.reconcile({ ackFloorStream: 0, ackFloorDelivery: 0, delivered: 8, ackPending: 5 })).toBe(true);
    for (const s of [1, 2, 3]) f.done(s);
    expect(f.next()?.streamSeq).toBe(5);
  });

  it("does not resume while the server holds a delivery this reader never saw", () => {
    const f = given([1, 2]);
    f.received(4, 4, "s4"); // d3 went elsewhere and is outstanding: the server has 4 pending
    for (const s of [1, 2, 4]) f.done(s);
    expect(f.reconcile({ ackFloorStream: 0, ackFloorDelivery: 0, delivered: 4, ackPending: 4 })).toBe(false);
    expect(f.next()).toBeUndefined();
  });

  it("takes another reader's floor: what it settled is no longer held", () => {
    const f = given([1, 2, 3]);
    f.received(5, 5, "s5"); // d4 went elsewhere
    f.done(5);
    // The other reader committed s1..s3 (delivered to both) and acked up to 3 with d4.
    expect(f.reconcile({ ackFloorStream: 3, ackFloorDelivery: 4, delivered: 5, ackPending: 1 })).toBe(true);
    expect(f.acked).toBe(3);
    expect(f.next()).toEqual({ streamSeq: 5, deliverySeq: 5, msg: "s5" });
  });

  it("takes a redelivery at or under its floor for an ack not taken: not clean, its floor sent again, clean once the server has it", () => {
    // Was: held as an ack in flight, to be covered by the next floor — which a quiet durable never sends,
    // and one at max_ack_pending never gets a delivery for: the batch came back every ack_wait, for good.
    const f = given([1, 2]);
    f.done(1);
    f.done(2);
    f.sent(f.next()!);
    // The ack was lost with the connection: after ack_wait the server redelivers s1, s2 as d3, d4.
    f.received(3, 1, "s1 again");
    expect(f.clean).toBe(false);
    f.received(4, 2, "s2 again");
    f.done(1);
    f.done(2);
    expect(f.next()).toBeUndefined();
    expect(f.forgotten({ ackFloorStream: 0, ackFloorDelivery: 0, delivered: 4, ackPending: 2 })).toEqual({ streamSeq: 2, deliverySeq: 2, msg: "s2" });
    // Sent again and taken: nothing outstanding, the server's floor at s2.
    expect(f.reconcile({ ackFloorStream: 2, ackFloorDelivery: 2, delivered: 4, ackPending: 0 })).toBe(true);
    expect(f.held).toBe(0);
    f.received(5, 3, "s3");
    f.done(3);
    expect(f.next()).toEqual({ streamSeq: 3, deliverySeq: 5, msg: "s3" });
  });

  it("takes a redelivery of an ack still in flight the same way: nothing to send again once the server has it", () => {
    const f = given([1, 2]);
    f.done(1);
    f.done(2);
    f.sent(f.next()!);
    f.received(3, 2, "s2 again");
    expect(f.clean).toBe(false);
    // The ack landed meanwhile: the server's floor is the one sent, the redelivery settled by it.
    expect(f.forgotten({ ackFloorStream: 2, ackFloorDelivery: 2, delivered: 3, ackPending: 0 })).toBeUndefined();
    expect(f.reconcile({ ackFloorStream: 2, ackFloorDelivery: 2, delivered: 3, ackPending: 0 })).toBe(true);
    expect(f.held).toBe(0);
  });

  it("follows a nats-server that restarted from an older consumer state: its lower floor, its numbering, its redeliveries", () => {
    // Acked up to s5 (d5); the server comes back knowing deliveries up to d3 and acks up to s2 only.
    const f = given([1, 2, 3, 4, 5]);
    for (const s of [1, 2, 3, 4, 5]) f.done(s);
    f.sent(f.next()!);
    expect(f.acked).toBe(5);
    // After ack_wait it redelivers s3..s5 as d4..d6 (numbering from its own d3), then s6 as d7.
    f.received(4, 3, "s3 again");
    expect(f.clean).toBe(false);
    f.received(5, 4, "s4 again");
    f.received(6, 5, "s5 again");
    f.received(7, 6, "s6");
    for (const s of [3, 4, 5, 6]) f.done(s);
    expect(f.next()).toBeUndefined();
    // The floor it sent (s5 with d5) is worth sending again: the server would take it (d5 above its d2).
    expect(f.forgotten({ ackFloorStream: 2, ackFloorDelivery: 2, delivered: 7, ackPending: 4 })).toEqual({ streamSeq: 5, deliverySeq: 5, msg: "s5" });
    expect(f.forgotten({ ackFloorStream: 5, ackFloorDelivery: 5, delivered: 7, ackPending: 1 })).toBeUndefined();
    expect(f.reconcile({ ackFloorStream: 2, ackFloorDelivery: 2, delivered: 7, ackPending: 4 })).toBe(true);
    expect(f.acked).toBe(2);
    expect(f.next()).toEqual({ streamSeq: 6, deliverySeq: 7, msg: "s6" });
  });
});
