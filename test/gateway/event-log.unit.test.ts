import { describe, expect, it } from "vitest";
import { deriveAccessId } from "../../contracts/index.js";
import { EventLog, decodeCursor, encodeCursor, ownString, tokenOf, type LogEntry } from "../../src/gateway/index.js";

const HOUR = 3600_000;

function add(log: EventLog, seq: number, userId: string, at: number, type = "ProgressUpdated", version = seq): LogEntry {
  const access_id = deriveAccessId(userId, "c");
  const payload = type === "CourseAccessGranted" ? { access_id, user_id: userId, course_id: "c", expires_at: null, order_id: null } : { access_id, user_id: userId, course_id: "c", progress: Math.min(100, seq) };
  return log.append({ seq, at, userId, accessId: access_id, version }, `frame ${seq}`, { event_type: type, payload, occurred_on: new Date(at).toISOString(), aggregate_version: version } as never);
}

describe("ownString", () => {
  it("returns an equal string, whatever its content, and null as null", () => {
    for (const s of ["", "short", "user-00012345-aaaa-bbbb-cccc-0123456789ab", "\ud800 lone surrogate, 13+", "ünïcödé ∑ 🚀 long enough"]) expect(ownString(s)).toBe(s);
    expect(ownString(null)).toBeNull();
  });
});

describe("cursors", () => {
  it("round-trip stream sequences and refuse anything else", () => {
    for (const seq of [0, 1, 35, 36, 1_000_000, Number.MAX_SAFE_INTEGER]) expect(decodeCursor(encodeCursor(seq))).toBe(seq);
    for (const bad of [undefined, "", "s", "S1", "s-1", "s1.5", "x10", "s" + "z".repeat(12), "s zz"]) expect(decodeCursor(bad)).toBeUndefined();
  });
});

describe("tokens in requests", () => {
  it("come from the query, else from a Bearer header", () => {
    expect(tokenOf("q", "Bearer h")).toBe("q");
    expect(tokenOf(undefined, "Bearer h")).toBe("h");
    expect(tokenOf(undefined, "bearer   h  ")).toBe("h");
    expect(tokenOf(undefined, "Basic abc")).toBeUndefined();
    expect(tokenOf(undefined, undefined)).toBeUndefined();
  });
});

describe("the event log", () => {
  it("serves a learner's events after a cursor, and nobody else's", () => {
    const log = new EventLog({ minAgeMs: 24 * HOUR, minEvents: 1000, maxEvents: 1000 });
    const now = Date.now();
    add(log, 1, "a", now, "CourseAccessGranted", 1);
    add(log, 2, "b", now, "CourseAccessGranted", 1);
    add(log, 3, "a", now, "ProgressUpdated", 2);
    add(log, 4, "a", now, "ProgressUpdated", 3);
    log.head = 4;
    expect(log.since("a", 0)!.map((e) => e.seq)).toEqual([1, 3, 4]);
    expect(log.since("a", 3)!.map((e) => e.seq)).toEqual([4]);
    expect(log.since("a", 4)).toEqual([]);
    expect(log.since("b", 1)!.map((e) => e.seq)).toEqual([2]);
    expect(log.since("nobody", 0)).toEqual([]);
    expect(log.views("a")).toEqual([{ access_id: deriveAccessId("a", "c"), user_id: "a", course_id: "c", status: "active", progress: 4, completed: false, expires_at: null, order_id: null, version: 3 }]);
  });

  it("keeps the last minEvents of a learner beyond minAgeMs, and refuses cursors before what it dropped", () => {
    const log = new EventLog({ minAgeMs: HOUR, minEvents: 3, maxEvents: 1000 });
    const old = Date.now() - 2 * HOUR;
    for (let seq = 1; seq <= 6; seq++) add(log, seq, "a", old);
    expect(log.size).toBe(3);
    expect(log.since("a", 3)!.map((e) => e.seq)).toEqual([4, 5, 6]);
    expect(log.since("a", 2)).toBeUndefined();
    // Young events are all kept, whatever their number.
    const young = new EventLog({ minAgeMs: HOUR, minEvents: 3, maxEvents: 1000 });
    for (let seq = 1; seq <= 6; seq++) add(young, seq, "a", Date.now());
    expect(young.since("a", 0)!).toHaveLength(6);
  });

  it("lets go of every evicted event: past its budget, memory stays flat however long it runs", () => {
    // The soak's finding: each learner kept up to 64 evicted entries, ~125 bytes per event past the budget.
    const log = new EventLog({ minAgeMs: 24 * HOUR, minEvents: 1000, maxEvents: 300 });
    const users = Array.from({ length: 100 }, (_, i) => `u${i}`);
    const now = Date.now();
    for (let seq = 1; seq <= 20_000; seq++) add(log, seq, users[(seq * 7919) % users.length]!, now, "ProgressUpdated", seq);
    expect(log.size).toBe(300);
    let held = 0;
    let slots = 0;
    for (const u of users) {
      const l = log.learner(u);
      if (!l) continue;
      held += l.size;
      slots += l.slots.length;
      expect(log.since(u, log.floor - 1)).toHaveLength(l.size);
    }
    expect(held).toBe(300);
    expect(slots).toBeLessThanOrEqual(2 * 300 + 9 * users.length);
    const resumed = users.flatMap((u) => log.since(u, log.floor - 1) ?? []).map((e) => e.seq).sort((a, b) => a - b);
    // What is held is exactly what resumes from the floor get: the newest 300 of the stream.
    expect(resumed).toEqual(Array.from({ length: 300 }, (_, k) => 20_000 - 299 + k));
    expect(log.since(users[0]!, 0)).toEqual(undefined); // its oldest went: a cursor before the floor resets
  });

  it("evicts the oldest events of the whole stream over its budget and raises the floor", () => {
    const log = new EventLog({ minAgeMs: 24 * HOUR, minEvents: 1000, maxEvents: 4 });
    const now = Date.now();
    add(log, 1, "a", now);
    add(log, 2, "b", now);
    add(log, 3, "a", now);
    add(log, 4, "c", now);
    add(log, 5, "c", now);
    add(log, 6, "c", now);
    expect(log.size).toBe(4);
    expect(log.floor).toBe(3);
    expect(log.since("b", 1)).toBeUndefined(); // b's event 2 is gone
    expect(log.since("b", 2)).toEqual([]);
    expect(log.since("a", 2)!.map((e) => e.seq)).toEqual([3]);
    expect(log.learners).toBe(2); // b had nothing left and no sockets: forgotten
    for (let seq = 7; seq <= 5000; seq++) add(log, seq, "d", now);
    expect(log.size).toBe(4);
    expect(log.since("d", 4996)!.map((e) => e.seq)).toEqual([4997, 4998, 4999, 5000]);
  });

  it("serves each frame as the UTF-8 bytes of its JSON, across slabs, for frames of any size, while it is buffered", () => {
    const log = new EventLog({ minAgeMs: 24 * HOUR, minEvents: 1000, maxEvents: 2_000 });
    const now = Date.now();
    const frames = new Map<number, string>();
    const entries = [];
    // ~4 MiB of frames: many 256 KiB slabs, tails that do not fit, multi-byte text, a lone surrogate
    // (as JSON.stringify writes it: escaped) and frames larger than a quarter of a slab.
    for (let seq = 1; seq <= 1_500; seq++) {
      const body = seq % 250 === 0 ? "x".repeat(70_000 + seq) : seq % 7 === 0 ? `ünïcödé ∑ 🚀 ${seq}`.repeat(seq % 40) : `plain ${seq}`.repeat(seq % 13);
      const frame = JSON.stringify({ type: "event", cursor: encodeCursor(seq), event: { body, odd: seq % 11 === 0 ? "\ud800" : null } });
      frames.set(seq, frame);
      const access_id = deriveAccessId(`u${seq % 50}`, "c");
      entries.push(log.append({ seq, at: now, userId: `u${seq % 50}`, accessId: access_id, version: seq }, frame, { event_type: "ProgressUpdated", payload: { access_id, user_id: `u${seq % 50}`, course_id: "c", progress: seq % 100 }, aggregate_version: seq } as never));
    }
    for (const e of entries) expect(Buffer.from(e.frame).equals(Buffer.from(frames.get(e.seq)!))).toBe(true);
    expect(entries.every((e) => e.at === now)).toBe(true);
    // Times far from now read back the same.
    const far = new EventLog({ minAgeMs: 365 * 24 * HOUR, minEvents: 10, maxEvents: 10 });
    for (const at of [now - 40 * 24 * HOUR, now + 40 * 24 * HOUR, 0]) expect(add(far, far.size + 1, "z", at).at).toBe(at);
    // Resumes read the same bytes.
    for (const e of log.since("u7", 0)!) expect(Buffer.from(e.frame).toString()).toBe(frames.get(e.seq));
    // Over the budget the oldest 600 went (their cursors reset); what is left still reads the same bytes.
    for (let seq = 1_501; seq <= 2_600; seq++) add(log, seq, "late", now);
    expect(log.size).toBe(2_000);
    expect(log.floor).toBe(601);
    expect(log.since("u1", 0)).toBeUndefined();
    expect(log.since("u0", 1_499)!.map((e) => Buffer.from(e.frame).toString())).toEqual([frames.get(1_500)]);
    expect(log.since("u1", 600)!.map((e) => e.seq)).toEqual(Array.from({ length: 18 }, (_, k) => 601 + 50 * k));
  });

  it("keeps serving the right events while learners' own retention leaves holes and the table is rebuilt", () => {
    const log = new EventLog({ minAgeMs: HOUR, minEvents: 2, maxEvents: 5_000 });
    const now = Date.now();
    const old = now - 2 * HOUR;
    const kept = new Map<string, number[]>();
    // 30 learners with old events keep their last 2 each (most of their slots become holes); "fresh" keeps
    // all of its young ones; 40,000 appends rebuild the table many times over.
    for (let seq = 1; seq <= 40_000; seq++) {
      const fresh = seq % 10 === 0 && seq <= 20_000;
      const user = fresh ? "fresh" : `old${seq % 30}`;
      add(log, seq, user, fresh ? now : old);
      const list = kept.get(user) ?? [];
      list.push(seq);
      kept.set(user, fresh ? list : list.slice(-2));
    }
    expect(log.size).toBe(30 * 2 + 2_000);
    for (const [user, seqs] of kept) {
      const from = user === "fresh" ? 0 : seqs[0]! - 1;
      const got = log.since(user, from)!;
      expect(got.map((e) => e.seq)).toEqual(seqs);
      for (const e of got) expect(Buffer.from(e.frame).toString()).toBe(`frame ${e.seq}`);
    }
    // Before what a learner's retention dropped, its cursors reset.
    expect(log.since("old1", 1)).toBeUndefined();
  });

  it("frees slabs that few surviving frames keep alive: 250 kept events of busy learners' traffic hold about their own bytes, not a slab each (gateway audit: 46 MiB for 110 KiB)", () => {
    const log = new EventLog({ minAgeMs: 0, minEvents: 1, maxEvents: 250_000 });
    const now = Date.now();
    const pad = "x".repeat(440);
    const kept = new Map<string, number>();
    // One learner whose every event replaces its last (its own retention drops them out of arrival order),
    // and one event in 400 of a learner seen once, kept: each of those was the only survivor of its slab.
    for (let seq = 1; seq <= 100_000; seq++) {
      const user = seq % 400 === 0 ? `light${seq}` : "heavy";
      const access_id = deriveAccessId(user, "c");
      log.append({ seq, at: now, userId: user, accessId: access_id, version: seq }, `frame ${seq} ${pad}`, { event_type: "ProgressUpdated", payload: { access_id, user_id: user, course_id: "c", progress: 1 }, occurred_on: new Date(now).toISOString(), aggregate_version: seq } as never);
      kept.set(user, seq);
    }
    expect(log.size).toBe(251);
    const { held, live } = log.slabBytes;
    expect(live).toBeGreaterThan(251 * 450);
    expect(live).toBeLessThan(251 * 470);
    // Within the compaction's bound: twice the frames' bytes and 2 MiB, and the slab being filled.
    expect(held).toBeLessThanOrEqual(2 * live + 9 * 256 * 1024);
    expect(log.compactions).toBeGreaterThan(0);
    // Every kept frame still reads as it was written, after being moved.
    for (const [user, seq] of kept) {
      const [e] = log.since(user, seq - 1)!;
      expect(Buffer.from(e!.frame).toString()).toBe(`frame ${seq} ${pad}`);
    }
  });
});
