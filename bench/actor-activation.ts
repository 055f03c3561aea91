/** Sections 4 and 5: cold activation from a snapshot, and the heap an idle live actor costs. */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack, encodeMsgPack } from "../contracts/index.js";
import type { Nerve } from "../src/app/index.js";
import { Repository, type Database } from "../src/persistence/index.js";
import { ActorSystem } from "../src/runtime/index.js";
import type { GcAccess } from "./gc.js";
import { settleHeap } from "./gc.js";
import { summarize, type LatencySummary } from "./percentiles.js";
import { runWindowed } from "./window.js";

/** Activation figures. */
export interface ActivationResult {
  stored: number;
  /** `system.read` on a cold actor, one at a time, in-process. */
  inProcessCold: LatencySummary;
  /** GetUser over NATS on cold ids, one at a time. */
  getUserCold: LatencySummary;
  /** GetUser over NATS on the same ids once live. */
  getUserWarm: LatencySummary;
  /** Cold activations with a window of concurrent reads, in-process. */
  concurrent: { window: number; activations: number; perSecond: number; latency: LatencySummary };
}

function expectVersion(version: number, id: string): void {
  if (version !== 2) throw new Error(`actor ${id} activated at version ${version}, expected its seeded version 2`);
}

/** Times cold activations in a freshly started Nerve whose actors have never been touched. */
export async function benchActivation(nerve: Nerve, client: NatsConnection, ids: string[], stored: number, window: number): Promise<ActivationResult> {
  // 40 % one at a time in-process, 20 % over NATS (cold, then warm), 40 % with a window of concurrent reads.
  const [a, b] = [Math.floor(ids.length * 0.4), Math.floor(ids.length * 0.6)];
  const [seq, nats, conc] = [ids.slice(0, a), ids.slice(a, b), ids.slice(b)];
  const live = nerve.system.size;

  const coldMs: number[] = [];
  for (const id of seq) {
    const t0 = performance.now();
    const version = await nerve.system.read("User", id, (a) => a.version);
    coldMs.push(performance.now() - t0);
    expectVersion(version, id);
  }

  const h = natsHeaders();
  h.set("Content-Type", "application/msgpack");
  const getUser = async (out: number[]) => {
    for (const id of nats) {
      const t0 = performance.now();
      const reply = await client.request("query.users.GetUser", encodeMsgPack({ user_id: id }), { timeout: 10_000, headers: h });
      out.push(performance.now() - t0);
      const d = decodeMsgPack(reply.data);
      const body = d.ok ? (d.value as { ok?: boolean; result?: { version?: number } }) : undefined;
      if (body?.ok !== true) throw new Error(`GetUser ${id} failed: ${JSON.stringify(body)}`);
      expectVersion(body.result?.version ?? -1, id);
    }
  };
  const getCold: number[] = [];
  await getUser(getCold);
  const getWarm: number[] = [];
  await getUser(getWarm);

  const concMs = new Float64Array(conc.length);
  const run = await runWindowed(conc.length, window, async (i) => {
    const t0 = performance.now();
    const version = await nerve.system.read("User", conc[i]!, (a) => a.version);
    concMs[i] = performance.now() - t0;
    expectVersion(version, conc[i]!);
  });
  const activated = nerve.system.size - live;
  if (activated !== ids.length) throw new Error(`expected ${ids.length} activations, the system shows ${activated} new live actors`);
  return {
    stored,
    inProcessCold: summarize(coldMs),
    getUserCold: summarize(getCold),
    getUserWarm: summarize(getWarm),
    concurrent: { window, activations: run.done, perSecond: run.done / (run.ms / 1000), latency: summarize(concMs) },
  };
}

/** Heap figures of many idle live actors. */
export interface ActorMemoryResult {
  actors: number;
  gc: GcAccess;
  heapBeforeMB: number;
  heapAfterMB: number;
  bytesPerActor: number;
  averageStateJsonBytes: number;
  activationSeconds: number;
}

/** Activates every id in a fresh ActorSystem over `db` and divides the retained heap by the actor count. */
export async function benchActorMemory(db: Database, ids: string[], window: number, gc: () => void, access: GcAccess, averageStateJsonBytes: number): Promise<ActorMemoryResult> {
  const repo = new Repository(db);
  const options = { load: (t: string, id: string) => repo.loadSnapshot(t, id), mailboxSize: 256, maxActors: ids.length + 1, idleMs: 3_600_000 };
  // Warm the driver, the statement cache and the JIT first, so their one-off allocations are not charged to actors.
  const warm = new ActorSystem(options);
  await runWindowed(Math.min(2000, ids.length), window, async (i) => void (await warm.read("User", ids[i]!, (a) => a.version)));
  warm.close();

  const system = new ActorSystem(options);
  try {
    const before = await settleHeap(gc);
    const t0 = performance.now();
    await runWindowed(ids.length, window, async (i) => expectVersion(await system.read("User", ids[i]!, (a) => a.version), ids[i]!));
    const activationSeconds = (performance.now() - t0) / 1000;
    const after = await settleHeap(gc);
    if (system.size !== ids.length) throw new Error(`expected ${ids.length} live actors, found ${system.size}`);
    return {
      actors: ids.length,
      gc: access,
      heapBeforeMB: before / 2 ** 20,
      heapAfterMB: after / 2 ** 20,
      bytesPerActor: (after - before) / ids.length,
      averageStateJsonBytes,
      activationSeconds,
    };
  } finally {
    system.close();
  }
}
