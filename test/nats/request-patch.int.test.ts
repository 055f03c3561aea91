/**
 * patches/@nats-io+nats-core+3.4.0.patch: a successful request must not build the "cancelled"
 * RequestError (a stack trace per request, ~9 % of the command path's CPU), and every failure
 * a request can meet must still reach its caller as before.
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
});
