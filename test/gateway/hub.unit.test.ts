import type { NatsConnection } from "@nats-io/nats-core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { EventLog, GatewayMetrics } from "../../src/gateway/index.js";
import { ClientCommands } from "../../src/gateway/client-commands.js";
import { Hub, type Conn } from "../../src/gateway/hub.js";
import type { WebSocket } from "../../src/gateway/uws.js";
import { createLogger } from "../../src/log/index.js";

function conn(userId: string, exp: number): Conn {
  return { ws: undefined, userId, exp, resume: undefined, queuedSeq: 0, sentSeq: -1, out: undefined, full: false, behindSince: 0, live: false, held: undefined, replyBytes: 0, skip: undefined, skipUntil: 0, inflight: 0, closed: false };
}

/**
 * What the hub sees of a uWS socket whose client reads only when told to: everything sent stays
 * buffered (the kernel's buffers are full) until {@link read}; `end` closes at once, as uWS's does.
 */
class StandInSocket {
  buffered = 0;
  readonly sent: string[] = [];
  ended: { code: number; reason: string } | undefined;
  constructor(
    private readonly hub: Hub,
    private readonly c: Conn,
  ) {
    c.ws = this as unknown as WebSocket<Conn>;
    hub.opened(c);
  }
  getBufferedAmount(): number {
    return this.buffered;
  }
  send(frame: string): number {
    this.sent.push(frame);
    this.buffered += Buffer.byteLength(frame);
    return 0; // uWS's "built up backpressure": it holds the frame (1 is written whole, 2 dropped)
  }
  cork(write: () => void): void {
    write();
  }
  end(code: number, reason: string): void {
    this.ended = { code, reason };
    this.hub.closed(this.c);
  }
  /** The client reads `bytes`; uWS calls drain. */
  read(bytes: number): void {
    this.buffered = Math.max(0, this.buffered - bytes);
    this.hub.drained(this.c);
  }
}

const BUDGET = 16 * 1024;
const SLOW_MS = 10_000;
const eventFrame = (seq: number) => JSON.stringify({ type: "event", cursor: `s${seq.toString(36)}`, event: { pad: "x".repeat(200) } });

let hub: Hub | undefined;
afterEach(() => {
  hub?.closeAll(1001, "");
  hub = undefined;
  vi.useRealTimers();
});

// A live socket: its welcome queued and written.
function liveSocket(): { c: Conn; ws: StandInSocket } {
  const c = conn("ada", Math.floor(Date.now() / 1000) + 3600);
  const ws = new StandInSocket(hub!, c);
  hub!.queue(c, JSON.stringify({ type: "welcome", user_id: "ada", cursor: "s0", progress: [] }), 0, 0);
  hub!.attach(c);
  hub!.flush();
  return { c, ws };
}

describe("the hub's expiry wheel", () => {
  it("forgets a second once its last socket has closed", () => {
    hub = new Hub(new EventLog<Conn>({ minAgeMs: 1000, minEvents: 1, maxEvents: 10 }), new GatewayMetrics(), { flushMs: 0, maxBufferedBytes: 1024, slowAfterMs: 1000 });
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const [a, b, c] = [conn("ada", exp), conn("bob", exp), conn("carol", exp + 0.5)];
    for (const x of [a, b, c]) hub.opened(x);
    expect(hub.expirySeconds).toBe(2); // exp, and the whole second after carol's exp + 0.5
    hub.closed(a);
    expect(hub.expirySeconds).toBe(2); // bob is still in exp's
    hub.closed(b);
    hub.closed(c);
    expect(hub.expirySeconds).toBe(0);
  });
});

describe("the hub's bounds on a socket that does not read", () => {
  it("writes at most one frame past the budget in a flush: after a send uWS had to buffer, it asks before the next", () => {
    hub = new Hub(new EventLog<Conn>({ minAgeMs: 1000, minEvents: 1, maxEvents: 10 }), new GatewayMetrics(), { flushMs: 0, maxBufferedBytes: BUDGET, slowAfterMs: SLOW_MS });
    const { c, ws } = liveSocket();
    const frameBytes = Buffer.byteLength(eventFrame(1000));
    for (let seq = 1; seq <= 400; seq++) hub.queue(c, eventFrame(seq), Date.now(), seq);
    hub.flush();
    expect(ws.buffered).toBeGreaterThan(BUDGET);
    expect(ws.buffered - frameBytes).toBeLessThanOrEqual(BUDGET); // the frame that crossed it, no more
    expect(c.full).toBe(true); // the rest waits for the drain
  });

  it("closes a client that floods frames without reading with 4408 once its unwritten acks pass the budget: what is queued for it stays bounded", () => {
    const metrics = new GatewayMetrics();
    hub = new Hub(new EventLog<Conn>({ minAgeMs: 1000, minEvents: 1, maxEvents: 10 }), metrics, { flushMs: 0, maxBufferedBytes: BUDGET, slowAfterMs: SLOW_MS });
    // Malformed frames are answered before anything reaches NATS: no connection is needed.
    const commands = new ClientCommands(undefined as unknown as NatsConnection, hub, metrics, createLogger("silent"), { maxFrameBytes: 8192, maxInflight: 16, timeoutMs: 5000 });
    const { c, ws } = liveSocket();
    const x = new TextEncoder().encode("x").buffer;
    let sent = 0;
    let mostQueued = 0;
    let mostReplyBytes = 0;
    // Tiny frames as fast as they come, a flush between bursts (as the hub's timer would): each gets an ack.
    for (; sent < 200_000 && !ws.ended; sent++) {
      commands.handle(c, x, false);
      if (sent % 64 === 63) hub.flush();
      mostQueued = Math.max(mostQueued, c.out?.length ?? 0);
      mostReplyBytes = Math.max(mostReplyBytes, c.replyBytes);
    }
    const ackBytes = Buffer.byteLength(ws.sent[1]!);
    expect(ackBytes).toBeGreaterThan(80);
    expect(ws.ended?.code).toBe(4408);
    // Closed once the acks uWS holds (the budget) and those queued behind them (the budget again) are spent.
    expect(sent).toBeLessThan((3 * BUDGET) / ackBytes);
    expect(mostReplyBytes).toBeLessThanOrEqual(BUDGET);
    expect(mostQueued / 3).toBeLessThanOrEqual(BUDGET / ackBytes);
    expect(c.out).toBeUndefined(); // forgotten once closed
  });

  it("closes a client that reads a little now and then but never catches up once it has been behind for slowAfterMs", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "setInterval", "setImmediate", "Date"] });
    hub = new Hub(new EventLog<Conn>({ minAgeMs: 1000, minEvents: 1, maxEvents: 10 }), new GatewayMetrics(), { flushMs: 0, maxBufferedBytes: BUDGET, slowAfterMs: SLOW_MS });
    const { c, ws } = liveSocket();
    let seq = 0;
    const behindAt = Date.now();
    // 100 events a second; the client reads 4 KiB every 2 s, each read a drain that lets a few out.
    for (let ms = 0; ms < 3 * SLOW_MS && !ws.ended; ms += 10) {
      hub.queue(c, eventFrame(++seq), Date.now(), seq);
      if (ms % 2000 === 1990) ws.read(4096);
      vi.advanceTimersByTime(10);
    }
    expect(ws.ended?.code).toBe(4408);
    expect(Date.now() - behindAt).toBeLessThanOrEqual(SLOW_MS + 1000 + 10); // the slow rule's 1 s tick
    expect(ws.ended?.reason).toBe(`s${c.sentSeq.toString(36)}`); // the last cursor written: it resumes from there
    expect(ws.sent.length).toBeGreaterThan(100); // it did read: drains let frames out
  });

  it("keeps a client that falls behind for a while but catches up each time", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "setInterval", "setImmediate", "Date"] });
    hub = new Hub(new EventLog<Conn>({ minAgeMs: 1000, minEvents: 1, maxEvents: 10 }), new GatewayMetrics(), { flushMs: 0, maxBufferedBytes: BUDGET, slowAfterMs: SLOW_MS });
    const { c, ws } = liveSocket();
    let seq = 0;
    for (let round = 0; round < 4; round++) {
      // Over the budget: 300 events of about 250 bytes while the client does not read...
      for (let i = 0; i < 300; i++) hub.queue(c, eventFrame(++seq), Date.now(), seq);
      vi.advanceTimersByTime(10);
      expect(c.behindSince).toBeGreaterThan(0);
      vi.advanceTimersByTime(0.7 * SLOW_MS);
      // ...then it reads everything: caught up.
      while (c.behindSince > 0) {
        ws.read(Number.MAX_SAFE_INTEGER);
        vi.advanceTimersByTime(10);
      }
      ws.read(Number.MAX_SAFE_INTEGER);
    }
    expect(ws.ended).toBeUndefined();
    expect(c.sentSeq).toBe(seq);
    expect(ws.sent.slice(1).map((f) => JSON.parse(f).cursor)).toEqual(Array.from({ length: seq }, (_, i) => `s${(i + 1).toString(36)}`));
  });
});
