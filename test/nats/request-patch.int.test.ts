/**
 * patches/@nats-io+nats-core+3.4.0.patch: a successful request must not build the "cancelled"
 * RequestError (a stack trace per request, ~9 % of the command path's CPU), and every failure
 * a request can meet must still reach its caller as before; what is published in one turn of the
 * event loop leaves in one socket write (flushed on setImmediate, not on the next microtask); a protocol
 * line is encoded by Buffer.from, not a TextEncoder, into the same UTF-8 bytes.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { TimeoutError, type NatsConnection } from "@nats-io/nats-core";
import { startNatsServer, type NatsServerHandle } from "../support/index.js";

// request.js reads `errors_1.RequestError` from this CommonJS module at call time, so counting its constructions works.
const require = createRequire(import.meta.url);
const errorsModule = require(join(dirname(require.resolve("@nats-io/nats-core")), "errors.js")) as { RequestError: new (...a: unknown[]) => Error };
const Original = errorsModule.RequestError;
let constructed = 0;

let nats: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  errorsModule.RequestError = class extends Original {
    constructor(...args: unknown[]) {
      super(...args);
      constructed++;
    }
  };
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, noAsyncTraces: true });
  nc.subscribe("echo", {
    callback: (_err, msg) => {
      msg.respond(msg.data);
    },
  });
  nc.subscribe("silent", { callback: () => undefined });
  await nc.flush();
});
afterAll(async () => {
  errorsModule.RequestError = Original;
  await nc?.close();
  await nats?.stop();
});

describe("nats-core request patch", () => {
  it("answers requests without building a RequestError", async () => {
    const before = constructed;
    const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => nc.request("echo", `m${i}`, { timeout: 2_000 })));
    expect(replies.map((m) => m.string())).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
    expect(constructed - before).toBe(0);
  });

  it("still rejects a request nobody answers with a timeout", async () => {
    await expect(nc.request("silent", "x", { timeout: 100 })).rejects.toBeInstanceOf(TimeoutError);
  });

  it("still rejects a request to a subject without subscribers as no responders", async () => {
    const err = (await nc.request("nobody.here", "x", { timeout: 2_000 }).catch((e: unknown) => e)) as { isNoResponders?: () => boolean };
    expect(err?.isNoResponders?.()).toBe(true);
  });

  it("leaves no request registered after replies, timeouts and failures", async () => {
    const mux = (nc as unknown as { protocol: { muxSubscriptions: { size(): number } } }).protocol.muxSubscriptions;
    await Promise.all([nc.request("echo", "a"), nc.request("silent", "b", { timeout: 50 }).catch(() => 0), nc.request("nobody.here", "c").catch(() => 0)]);
    expect(mux.size()).toBe(0);
  });

  it("writes what one turn of the event loop publishes in one socket write, across microtask generations, all delivered in order", async () => {
    const got: string[] = [];
    const sub = nc.subscribe("coalesce", { callback: (_err, msg) => void got.push(msg.string()) });
    await nc.flush();
    const transport = (nc as unknown as { protocol: { transport: { send(frame: Uint8Array): unknown } } }).protocol.transport;
    const send = transport.send.bind(transport);
    let writes = 0;
    transport.send = (frame) => {
      writes++;
      return send(frame);
    };
    try {
      // Each publish one microtask after the one before, as replies go out when a batch's awaits resolve:
      // flushed per microtask, that was a write each.
      let chain = Promise.resolve();
      for (let i = 0; i < 100; i++) chain = chain.then(() => nc.publish("coalesce", String(i)));
      await chain;
      await new Promise((r) => setImmediate(r));
      expect(writes).toBe(1);
    } finally {
      transport.send = send;
    }
    await nc.flush();
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
    sub.unsubscribe();
  });

  it("writes protocol lines as the same UTF-8 bytes a TextEncoder gives, also for subjects and reply subjects beyond ASCII", async () => {
    const transport = (nc as unknown as { protocol: { transport: { send(frame: Uint8Array): unknown } } }).protocol.transport;
    const send = transport.send.bind(transport);
    const frames: Uint8Array[] = [];
    transport.send = (frame) => {
      frames.push(Uint8Array.from(frame));
      return send(frame);
    };
    const subject = "utf8.grüße.日本";
    const got = new Promise<{ subject: string; data: string }>((resolve) => {
      nc.subscribe(subject, { max: 1, callback: (_err, msg) => resolve({ subject: msg.subject, data: msg.string() }) });
    });
    try {
      await nc.flush();
      nc.publish(subject, "payload", { reply: "reply.ünïcode" });
      await new Promise((r) => setImmediate(r));
    } finally {
      transport.send = send;
    }
    // The patched line is the one that ran (npm ci applies patches/ through patch-package's postinstall).
    const protocol = (nc as unknown as { protocol: { sendCommand: () => void } }).protocol;
    expect(String(protocol.sendCommand)).toContain('Buffer.from(cmd, "utf8")');
    const written = Buffer.concat(frames);
    const line = new TextEncoder().encode(`PUB ${subject} reply.ünïcode 7\r\n`);
    expect(written.includes(Buffer.from(line))).toBe(true);
    expect(await got).toEqual({ subject, data: "payload" });
  });
});
