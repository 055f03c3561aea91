import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { ensureStreams } from "../../src/nats/index.js";
import { startNatsServer, tempSqlitePath, type NatsServerHandle } from "../support/index.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, noAsyncTraces: true });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("event streams", () => {
  it("are created once and accepted as they are on the next start", async () => {
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm);
    await ensureStreams(jsm);
    const names: string[] = [];
    for await (const s of jsm.streams.list()) names.push(s.config.name);
    expect(names.sort()).toEqual(["EVENTS_ACCESS", "EVENTS_COURSES", "EVENTS_ORDERS", "EVENTS_POLICIES", "EVENTS_USERS"]);
  });

  it("refuse to start the service against a stream whose config conflicts with the contract", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete("EVENTS_ORDERS");
    await jsm.streams.add({ name: "EVENTS_ORDERS", subjects: ["events.orders.>"], storage: "memory" as never });
    const db = await tempSqlitePath();
    const err = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}` }), createLogger("silent")).catch((e) => e);
    expect(String(err)).toMatch(/stream EVENTS_ORDERS conflicts with the contract: storage memory ≠ file/);
    await db.cleanup();
  });
});
