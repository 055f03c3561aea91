/**
 * Section 1b: the floor of any command service on this machine. A responder with no actor, no
 * database and no validation answers each command request at once and publishes one relay-shaped
 * event to a file stream (msg id and three headers, 256 publishes in flight), the two NATS legs every
 * durable command needs. Nerve can only be slower; its ratio to the raw publish rate can only be lower.
 */
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { encodeMsgPack } from "../contracts/index.js";
import type { CommandLoadResult } from "./command-load.js";
import type { LoadClient } from "./load-client.js";
import { cpuMeter } from "./thread-cpu.js";

/** What the floor measured. */
export interface FloorResult {
  load: CommandLoadResult;
  /** Events confirmed by the stream. */
  published: number;
  /** Machine CPU per request: this process (responder and load generator) and nats-server, µs. */
  processCpuUsPerRequest: number;
  serverCpuUsPerRequest: number | undefined;
}

const STREAM = "BENCH_FLOOR";
const WINDOW = 256;

/** Runs the floor: `count` UpdateUserProfile-shaped requests over `ids`, `inflight` at a time. */
export async function benchFloor(url: string, load: LoadClient, o: { ids: string[]; count: number; inflight: number; deadline: number; serverPid?: number; rate?: number }): Promise<FloorResult> {
  const nc: NatsConnection = await connect({ servers: url, name: "bench-floor", noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM, subjects: ["bench.floor.>"], storage: StorageType.File, num_replicas: 1 });
  const js = jetstream(nc);
  const body = new Uint8Array(300);
  const reply = encodeMsgPack({ ok: true, aggregate_id: "x", aggregate_version: 1, events: [{ event_type: "UserProfileUpdated" }] });
  const queue: { subject: string; id: string }[] = [];
  let inflight = 0;
  let published = 0;
  let failed = 0;
  let n = 0;
  const run = Date.now().toString(36);
  const pump = (): void => {
    while (inflight < WINDOW && queue.length > 0) {
      const { subject, id } = queue.shift()!;
      const h = natsHeaders();
      h.set("Content-Type", "application/msgpack");
      h.set("Event-Type", "UserProfileUpdated");
      h.set("Event-Version", "1");
      inflight++;
      js.publish(subject, body, { msgID: id, headers: h }).then(
        () => published++,
        () => failed++,
      ).finally(() => {
        inflight--;
        pump();
      });
    }
  };
  const sub = nc.subscribe("cmd.users.UpdateUserProfile.*", {
    callback: (_err, msg) => {
      const id = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
      msg.respond(reply);
      queue.push({ subject: `bench.floor.${id}`, id: `${run}-${n++}` });
      pump();
    },
  });
  await nc.flush();
  try {
    const cpu = cpuMeter(o.serverPid);
    const result = await load.run({ kind: "profile", ids: o.ids, count: o.count, inflight: o.inflight, tag: "floor", deadline: o.deadline, ...(o.rate ? { rate: o.rate } : {}) });
    while ((inflight > 0 || queue.length > 0) && Date.now() < o.deadline + 30_000) await new Promise((r) => setTimeout(r, 5));
    const spent = cpu();
    if (failed > 0) throw new Error(`${failed} floor publishes failed`);
    return {
      load: result,
      published,
      processCpuUsPerRequest: (spent.processMs * 1000) / result.sent,
      serverCpuUsPerRequest: spent.serverMs === undefined ? undefined : (spent.serverMs * 1000) / result.sent,
    };
  } finally {
    sub.unsubscribe();
    await jsm.streams.delete(STREAM).catch(() => undefined);
    await nc.close();
  }
}
