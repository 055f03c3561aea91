/**
 * Where the load generator runs, always on its own NATS connection: on the main thread beside the
 * service (the default; its cost, about a tenth of the thread, is then in the figures), or with
 * `BENCH_CLIENT=worker` in a worker thread, which keeps the service's event loop to itself — worth it
 * with cores to spare; on two cores shared with nats-server it only moves the contention.
 */
import { Worker } from "node:worker_threads";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { runCommandLoad, type CommandLoadResult, type LoadSpec } from "./command-load.js";

/** Where the client runs. */
export type ClientPlacement = "worker" | "main";

/** Runs command loads against a NATS server from its own connection. */
export interface LoadClient {
  readonly placement: ClientPlacement;
  run(spec: LoadSpec): Promise<CommandLoadResult>;
  close(): Promise<void>;
}

/** A message to the load worker, and its answer. */
export type WorkerRequest = { id: number; spec: LoadSpec };
export type WorkerAnswer = { id: number; result?: CommandLoadResult; error?: string } | { ready: true } | { failed: string };

/** Starts a load client on its own connection. */
export async function startLoadClient(url: string, placement: ClientPlacement): Promise<LoadClient> {
  if (placement === "main") {
    const nc: NatsConnection = await connect({ servers: url, name: "bench-load", noAsyncTraces: true });
    return { placement, run: (spec) => runCommandLoad(nc, spec), close: () => nc.close() };
  }
  // The worker is plain JavaScript until tsx is registered in it, so it bootstraps through eval.
  const entry = new URL("./load-worker.ts", import.meta.url).href;
  const code = `import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); })`;
  const worker = new Worker(code, { eval: true, workerData: { url } });
  const pending = new Map<number, { resolve: (r: CommandLoadResult) => void; reject: (e: Error) => void }>();
  let next = 0;
  let dead: Error | undefined;
  const failAll = (err: Error) => {
    dead ??= err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  await new Promise<void>((resolve, reject) => {
    worker.on("message", (m: WorkerAnswer) => {
      if ("ready" in m) return resolve();
      if ("failed" in m) return reject(new Error(`load worker failed to start: ${m.failed}`));
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.result) p?.resolve(m.result);
      else p?.reject(new Error(m.error ?? "load worker failed"));
    });
    worker.on("error", (err) => {
      failAll(err);
      reject(err);
    });
    worker.on("exit", (code) => failAll(new Error(`load worker exited with ${code}`)));
  });
  return {
    placement,
    run(spec) {
      if (dead) return Promise.reject(dead);
      const id = next++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, spec } satisfies WorkerRequest);
      });
    },
    async close() {
      worker.postMessage("close");
      const exited = new Promise((r) => worker.once("exit", r));
      const timer = setTimeout(() => void worker.terminate(), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
