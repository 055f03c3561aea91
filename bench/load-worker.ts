/** The load worker: one NATS connection, running the command loads the main thread sends it. */
import { parentPort, workerData } from "node:worker_threads";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { runCommandLoad } from "./command-load.js";
import type { WorkerAnswer, WorkerRequest } from "./load-client.js";

const port = parentPort!;
const answer = (m: WorkerAnswer) => port.postMessage(m);
let nc: NatsConnection;
try {
  nc = await connect({ servers: (workerData as { url: string }).url, name: "bench-load-worker", noAsyncTraces: true });
  answer({ ready: true });
} catch (err) {
  answer({ failed: String(err) });
  process.exit(1);
}

port.on("message", (m: WorkerRequest | "close") => {
  if (m === "close") {
    void nc.close().finally(() => port.close());
    return;
  }
  runCommandLoad(nc, m.spec).then(
    (result) => answer({ id: m.id, result }),
    (err) => answer({ id: m.id, error: String((err as Error)?.stack ?? err) }),
  );
});
