/**
 * The thread of the SQLite write worker: the write engine (sqlite-write-engine.ts) on a thread of its own,
 * its messages through the thread's port. A crash of the engine ends the thread; the main side settles
 * what was in flight and starts another (sqlite-write-worker.ts).
 */
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { startWriteEngine, type EngineMessage } from "./sqlite-write-engine.js";
import type { WorkerSetup } from "./sqlite-write-worker.js";

const port = parentPort!;
const engine = startWriteEngine(workerData as WorkerSetup, {
  reply: (m) => port.postMessage(m),
  pull: () => receiveMessageOnPort(port)?.message as EngineMessage | undefined,
  defer: (drain) => drain(),
  closed: () => port.close(),
  crash: () => process.exit(1),
});
port.on("message", (msg: EngineMessage) => engine.take(msg));
