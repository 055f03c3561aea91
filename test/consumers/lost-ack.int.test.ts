/**
 * A floor ack lost with the connection (nats.js drops what it had not written when it reconnects) is sent
 * again once its deliveries come back (NATS-side exhaustion audit). Before, the reader took a redelivery
 * at or under the floor it had sent as an ack in flight, to be covered by the next floor — which a quiet
 * durable never sends (the same batch came back every ack_wait, for days) and a durable at
 * max_ack_pending never gets a delivery for (stopped for good). Real nats-server, a TCP proxy in front of
 * it that swallows the ack and cuts the connection, real SQLite read models.
 */
import { createConnection, createServer, type Socket } from "node:net";
import { afterEach, beforeEach, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Headers, encodeMsgPack, type EnvelopeBase } from "../../contracts/index.js";
import { ConsumerRunner, DeadLetters, EventHandler } from "../../src/consumers/index.js";
import { freePort, until, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
import { envelope, openReadModels, quiet, type ReadModels } from "../projections/fixtures.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;
let m: ReadModels;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
useNatsWithStreams((h) => ({ nats, nc, jsm } = h));

beforeEach(async () => {
  m = await openReadModels();
  await jsm.streams.purge("EVENTS_ORDERS");
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await jsm.consumers.delete("EVENTS_ORDERS", "access-grants").catch(() => false);
  await m?.close();
});

/** A proxy to nats-server that, once armed, swallows the first chunk from the client holding `marker` and cuts that connection. */
async function droppingProxy(target: number) {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let armed: string | undefined;
  let dropped = 0;
  const server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port: target });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.on("data", (chunk: Buffer) => {
      if (armed && chunk.includes(armed)) {
        armed = undefined;
        dropped++;
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return {
    port,
    arm: (marker: string) => (armed = marker),
    dropped: () => dropped,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

async function publish(e: EnvelopeBase): Promise<void> {
  const h = natsHeaders();
  h.set(Headers.EventType, e.event_type);
  await jetstream(nc).publish(`events.orders.${e.event_type}.${e.aggregate_id}`, encodeMsgPack(e), { headers: h, msgID: e.event_id });
}

const paid = (order: string) => envelope("OrderPaid", order, 2, { order_id: order, user_id: `u-${order}`, course_ids: ["c1"], payment_id: `pay-${order}` });

it("sends a floor lost with the connection again when its delivery comes back: the durable settles, nothing is applied twice", async () => {
  const proxy = await droppingProxy(nats.port);
  cleanups.push(() => proxy.close());
  const readerNc = await connect({ servers: `nats://127.0.0.1:${proxy.port}`, reconnectTimeWait: 100, maxReconnectAttempts: -1, noAsyncTraces: true });
  cleanups.push(() => readerNc.close());
  const runner = new ConsumerRunner(jetstream(readerNc), await jetstreamManager(readerNc), new EventHandler(m.db, m.subscriber("access-grants")), new DeadLetters(m.db), quiet);
  cleanups.push(() => runner.stop());
  await runner.start();
  const settled = async (floor: number) => {
    const info = await jsm.consumers.info("EVENTS_ORDERS", "access-grants");
    return info.ack_floor.stream_seq === floor && info.num_ack_pending === 0;
  };
  await publish(paid("o1"));
  await until("the first event acknowledged", () => settled(1));
  // A short ack_wait for the test (the runner makes its durables with 30 s): the lost ack's delivery comes back in a second.
  await jsm.consumers.update("EVENTS_ORDERS", "access-grants", { ack_wait: nanos(1000) });
  proxy.arm("$JS.ACK.EVENTS_ORDERS.access-grants.");
  await publish(paid("o2"));
  await until("the second event's ack swallowed with the connection", () => proxy.dropped() === 1);
  // Before: redelivered every ack_wait and never acknowledged (ack_pending 1 for as long as no later event came).
  await until("the second event acknowledged after all", () => settled(2), 10_000);
  expect(m.bus.finished.filter((t) => t === "GrantCourseAccess")).toHaveLength(2);
  const info = await jsm.consumers.info("EVENTS_ORDERS", "access-grants");
  expect(info.num_redelivered).toBeLessThanOrEqual(1);
});
