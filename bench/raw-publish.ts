/** Section 1: the ceiling — plain JetStream publishes to a file-backed stream with a window of acks. */
import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { cpuMeter, type CpuSpent } from "./thread-cpu.js";
import { runWindowed } from "./window.js";

/** Options of the raw publish bench. */
export interface RawPublishOptions {
  messages: number;
  window: number;
  bytes: number;
  deadline: number;
  /** nats-server's pid, to count its CPU per message too. */
  serverPid?: number;
}

/** One raw publish run. */
export interface RawPublishResult {
  variant: string;
  messages: number;
  seconds: number;
  perSecond: number;
  /** CPU per message of the publishing process (all threads) and of nats-server, in µs. */
  clientCpuUsPerMessage: number;
  serverCpuUsPerMessage: number | undefined;
}

const STREAM = "BENCH_RAW";

/**
 * Publishes to a throw-away file stream twice: bare, then shaped like the outbox relay's publishes
 * (Nats-Msg-Id for de-duplication plus three headers), so the relay's own ceiling is visible too.
 */
export async function benchRawPublish(nc: NatsConnection, o: RawPublishOptions): Promise<RawPublishResult[]> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM, subjects: ["bench.raw.>"], storage: StorageType.File, num_replicas: 1 });
  try {
    const js = jetstream(nc);
    const payload = new Uint8Array(randomBytes(o.bytes));
    const out: RawPublishResult[] = [];

    let cpu = cpuMeter(o.serverPid);
    const bare = await runWindowed(o.messages, o.window, async (i) => {
      await js.publish(`bench.raw.${i % 1000}`, payload);
    }, o.deadline);
    out.push({ variant: "bare publish", messages: bare.done, seconds: bare.ms / 1000, perSecond: bare.done / (bare.ms / 1000), ...perMessage(cpu(), bare.done) });

    cpu = cpuMeter(o.serverPid);

    const run = Date.now().toString(36);
    const shaped = await runWindowed(o.messages, o.window, async (i) => {
      const h = natsHeaders();
      h.set("Content-Type", "application/msgpack");
      h.set("Event-Type", "UserProfileUpdated");
      h.set("Event-Version", "1");
      await js.publish(`bench.raw.${i % 1000}`, payload, { msgID: `${run}-${i}`, headers: h });
    }, o.deadline);
    out.push({ variant: "relay-shaped (msgID + 3 headers)", messages: shaped.done, seconds: shaped.ms / 1000, perSecond: shaped.done / (shaped.ms / 1000), ...perMessage(cpu(), shaped.done) });
    return out;
  } finally {
    await jsm.streams.delete(STREAM).catch(() => undefined);
  }
}

function perMessage(spent: CpuSpent, n: number): Pick<RawPublishResult, "clientCpuUsPerMessage" | "serverCpuUsPerMessage"> {
  return { clientCpuUsPerMessage: (spent.processMs * 1000) / n, serverCpuUsPerMessage: spent.serverMs === undefined ? undefined : (spent.serverMs * 1000) / n };
}
