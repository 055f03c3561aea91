/** The command benches' NATS side: a private nats-server, a client connection and the load generator. */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNatsServer, type NatsServerHandle } from "../test/support/nats-server.js";
import type { Cleanup } from "./cleanup.js";
import { startLoadClient, type ClientPlacement, type LoadClient } from "./load-client.js";

/** What {@link startRig} starts. */
export interface Rig {
  nats: NatsServerHandle;
  client: NatsConnection;
  load: LoadClient;
}

/** Starts the server, the client and the load generator (placed as asked); each is released by `cleanup`. */
export async function startRig(cleanup: Cleanup, placement: ClientPlacement): Promise<Rig> {
  const nats = await startNatsServer();
  cleanup.add("nats-server", () => nats.stop());
  const client = await connect({ servers: nats.url, name: "bench-client", noAsyncTraces: true });
  cleanup.add("client connection", () => client.close());
  const load = await startLoadClient(nats.url, placement);
  cleanup.add("load client", () => load.close());
  return { nats, client, load };
}
