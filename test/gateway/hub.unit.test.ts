import { afterEach, describe, expect, it } from "vitest";
import { EventLog, GatewayMetrics } from "../../src/gateway/index.js";
import { Hub, type Conn } from "../../src/gateway/hub.js";

// No sockets: these tests only open and close connections, which never write to one.
function conn(userId: string, exp: number): Conn {
  return { ws: undefined, userId, exp, resume: undefined, queuedSeq: 0, sentSeq: -1, out: undefined, fullSince: 0, live: false, held: undefined, heldBytes: 0, skip: undefined, skipUntil: 0, inflight: 0, closed: false };
}

let hub: Hub | undefined;
afterEach(() => hub?.closeAll(1001, ""));

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
