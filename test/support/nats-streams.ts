/** A private nats-server with Nerve's streams, for the test file that calls it. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll } from "vitest";
import { ensureStreams } from "../../src/nats/index.js";
import { startNatsServer, type NatsServerHandle } from "./nats-server.js";

/** The server, a connection to it and its JetStream manager. */
export interface NatsWithStreams {
  nats: NatsServerHandle;
  nc: NatsConnection;
  jsm: JetStreamManager;
}

/**
 * Starts a nats-server before the file's tests, connects and makes the contract's streams (or what
 * `streams` makes instead), and hands them to `set`; closes the connection and stops the server after
 * them (after the file's own later afterAll hooks).
 */
export function useNatsWithStreams(set: (h: NatsWithStreams) => unknown, streams: (jsm: JetStreamManager) => Promise<unknown> = (jsm) => ensureStreams(jsm)): void {
  let nats: NatsServerHandle | undefined;
  let nc: NatsConnection | undefined;
  beforeAll(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url, noAsyncTraces: true });
    const jsm = await jetstreamManager(nc);
    await streams(jsm);
    await set({ nats, nc, jsm });
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });
}
