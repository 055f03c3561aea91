/**
 * Section 1b: the floor of any command service on this machine. A responder with no actor, no
 * database and no validation answers each command request at once and publishes one relay-shaped
 * event to a file stream (msg id and three headers, 256 publishes in flight), the two NATS legs every
 * durable command needs. Nerve can only be slower; its ratio to the raw publish rate can only be lower.
 */
import { AckPolicy, jetstream, jetstreamManager, StorageType, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { Svcm, type Service } from "@nats-io/services";
import { encodeMsgPack } from "../contracts/index.js";
import type { CommandLoadResult } from "./command-load.js";
import type { LoadClient } from "./load-client.js";
import { cpuMeter } from "./thread-cpu.js";
import { startDurableStore, type DurableStore } from "./durable-floor.js";

/** What the floor measured. */
export interface FloorResult {
  load: CommandLoadResult;
  /** Events confirmed by the stream. */
  published: number;
  /** Machine CPU per request: this process (responder and load generator) and nats-server, µs. */
  processCpuUsPerRequest: number;
  serverCpuUsPerRequest: number | undefined;
  /** With durable readers: what they read (each), undelivered at the end of the load (the worst), and seconds from then until all had read everything. */
  readers?: { count: number; ack: "explicit" | "all"; consumedEach: number[]; lagAtLoadEnd: number; catchUpSeconds: number };
  /** The durable floor's group commits (durable-floor.ts), when it was one. */
  durable?: { commits: number; writes: number; averageBatch: number };
}

/**
 * Durable readers of the floor's stream, as a subscribing context reads its events: a pull consumer each,
 * in this process, that takes every event and acknowledges it (each one, with `AckPolicy.Explicit`; or,
 * with `ack: "all"`, only the latest of what arrived in one turn of the event loop, the least
 * acknowledging a reader can do, and about what Nerve's consumers do: an ack per committed batch). They do nothing else with an event: no decode.
 */
async function startReaders(nc: NatsConnection, count: number, ack: "explicit" | "all") {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const consumed = new Array<number>(count).fill(0);
  const streams: ConsumerMessages[] = [];
  for (let i = 0; i < count; i++) {
    const name = `floor-reader-${i}`;
    await jsm.consumers.add(STREAM, { durable_name: name, ack_policy: ack === "all" ? AckPolicy.All : AckPolicy.Explicit, max_ack_pending: 20_000 });
    const messages = await (await js.consumers.get(STREAM, name)).consume({ max_messages: 256 });
    streams.push(messages);
    let latest: JsMsg | undefined;
    const ackLatest = () => {
      latest?.ack();
      latest = undefined;
    };
    void (async () => {
      for await (const m of messages) {
        consumed[i]!++;
        if (ack === "explicit") m.ack();
        else {
          if (!latest) setImmediate(ackLatest);
          latest = m;
        }
      }
    })().catch(() => undefined);
  }
  return { consumed, stop: () => Promise.all(streams.map((m) => m.close())) };
}

/** Which durable floor benchFloor runs: its store on a write worker, on the main thread, or the main thread's with the contract's per-command asks (durable-floor.ts). */
export type DurableFloorKind = "worker" | "main" | "contract";

/** Machine CPU per request of a floor run: this process and nats-server, µs (NaN without the server's figure). */
export const machineCpuUs = (f: FloorResult): number => f.processCpuUsPerRequest + (f.serverCpuUsPerRequest ?? NaN);

const STREAM = "BENCH_FLOOR";
const WINDOW = 256;

/**
 * Runs the floor: `count` UpdateUserProfile-shaped requests over `ids`, `inflight` at a time. With `durable`,
 * the durable floor (section 1d): each request decoded, checked and committed with its event and outbox row
 * before its reply, the event published from the commit and its row deleted in a later one (durable-floor.ts);
 * `"contract"`, the durable floor + contract: the main-thread durable floor plus what CONTRACT.md asks of every command
 * (served through the service API, headers read, a command id, the trace carried into the event's headers,
 * the reply's Nerve-Instance header: durable-floor.ts).
 */
export async function benchFloor(url: string, load: LoadClient, o: { ids: string[]; count: number; inflight: number; deadline: number; serverPid?: number; rate?: number; readers?: { count: number; ack: "explicit" | "all" }; durable?: DurableFloorKind }): Promise<FloorResult> {
  const nc: NatsConnection = await connect({ servers: url, name: "bench-floor", noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM, subjects: ["bench.floor.>"], storage: StorageType.File, num_replicas: 1 });
  const js = jetstream(nc);
  const body = new Uint8Array(300);
  const reply = encodeMsgPack({ ok: true, aggregate_id: "x", aggregate_version: 1, events: [{ event_type: "UserProfileUpdated" }] });
  // What to publish: the floor's fixed body, or a committed event's own (and what to tell once JetStream has it).
  const queue: { subject: string; id: string; body?: Uint8Array; published?: () => void; traceparent?: string | undefined; tracestate?: string | undefined }[] = [];
  let inflight = 0;
  let published = 0;
  let failed = 0;
  let n = 0;
  const run = Date.now().toString(36);
  const pump = (): void => {
    while (inflight < WINDOW && queue.length > 0) {
      const { subject, id, body: own, published: told, traceparent, tracestate } = queue.shift()!;
      const h = natsHeaders();
      h.set("Content-Type", "application/msgpack");
      h.set("Event-Type", "UserProfileUpdated");
      h.set("Event-Version", "1");
      if (traceparent) h.set("traceparent", traceparent);
      if (tracestate) h.set("tracestate", tracestate);
      inflight++;
      js.publish(subject, own ?? body, { msgID: id, headers: h }).then(
        () => {
          published++;
          told?.();
        },
        () => failed++,
      ).finally(() => {
        inflight--;
        pump();
      });
    }
  };
  let store: DurableStore | undefined;
  try {
    store = o.durable
      ? await startDurableStore(o.ids, (id) => `bench.floor.${id}`, (e) => {
          queue.push({ subject: e.subject, id: e.msgID, body: e.body, published: e.published, traceparent: e.traceparent, tracestate: e.tracestate });
          pump();
        }, o.durable === "contract" ? "main" : o.durable, o.durable === "contract" ? { instance: `bench-floor-${process.pid}` } : undefined)
      : undefined;
  } catch (err) {
    await nc.close();
    throw err;
  }
  const take = (msg: Msg): void => {
    const id = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    if (store) return store.take(msg, id);
    msg.respond(reply);
    queue.push({ subject: `bench.floor.${id}`, id: `${run}-${n++}` });
    pump();
  };
  // The durable floor + contract is served as the contract asks (§3: the NATS service API, its stats kept per request); the others by a bare subscription.
  let service: Service | undefined;
  let sub: Subscription | undefined;
  if (o.durable === "contract") {
    try {
      service = await new Svcm(nc).add({ name: "nerve-floor", version: "1.0.0" });
      service.addEndpoint("cmd-users", { subject: "cmd.users.UpdateUserProfile.*", handler: (_err, msg) => take(msg) });
    } catch (err) {
      await store?.close();
      await nc.close();
      throw err;
    }
  } else sub = nc.subscribe("cmd.users.UpdateUserProfile.*", { callback: (_err, msg) => take(msg) });
  await nc.flush();
  const readers = o.readers && o.readers.count > 0 ? await startReaders(nc, o.readers.count, o.readers.ack) : undefined;
  try {
    const cpu = cpuMeter(o.serverPid);
    const result = await load.run({ kind: "profile", ids: o.ids, count: o.count, inflight: o.inflight, tag: "floor", deadline: o.deadline, ...(o.rate ? { rate: o.rate } : {}) });
    while ((inflight > 0 || queue.length > 0) && Date.now() < o.deadline + 30_000) await new Promise((r) => setTimeout(r, 5));
    // The readers' work is part of each command's cost: the CPU counts until they have read every event.
    const loadEnd = performance.now();
    const lagAtLoadEnd = readers ? published - Math.min(...readers.consumed) : 0;
    while (readers && Math.min(...readers.consumed) < published && Date.now() < o.deadline + 60_000) await new Promise((r) => setTimeout(r, 5));
    const catchUpSeconds = (performance.now() - loadEnd) / 1000;
    const spent = cpu();
    if (failed > 0) throw new Error(`${failed} floor publishes failed`);
    if (store && store.stats.rejected > 0) throw new Error(`the durable floor rejected ${store.stats.rejected} commands`);
    if (readers && Math.min(...readers.consumed) < published) throw new Error(`the floor's readers read ${readers.consumed.join(", ")} of ${published} events`);
    return {
      load: result,
      published,
      processCpuUsPerRequest: (spent.processMs * 1000) / result.sent,
      serverCpuUsPerRequest: spent.serverMs === undefined ? undefined : (spent.serverMs * 1000) / result.sent,
      ...(readers && o.readers && { readers: { count: o.readers.count, ack: o.readers.ack, consumedEach: [...readers.consumed], lagAtLoadEnd, catchUpSeconds } }),
      ...(store && { durable: { commits: store.stats.commits, writes: store.stats.writes, averageBatch: store.stats.writes / Math.max(1, store.stats.commits) } }),
    };
  } finally {
    await readers?.stop().catch(() => undefined);
    sub?.unsubscribe();
    await service?.stop().catch(() => undefined);
    await store?.close();
    await jsm.streams.delete(STREAM).catch(() => undefined);
    await nc.close();
  }
}
