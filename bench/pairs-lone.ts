/**
 * bench:pairs' one-at-a-time phase of a subject, shared by the bench (bench/pairs.ts) and by the child process
 * it starts for the phase with `BENCH_PAIRS_LONE_METHOD=process` (bench/pairs-lone-child.ts): the same code
 * measures a subject whether its service runs in the bench's process or in one of its own.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNerve, type Nerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import type { Cleanup } from "./cleanup.js";
import { failures, type CommandLoadResult, type LoadSpec } from "./command-load.js";
import { USERS_STREAM, usersStreamMessages, waitConfirmed } from "./durable-commands.js";
import { benchFloor, type DurableFloorKind } from "./floor.js";
import type { LoadClient } from "./load-client.js";
import { watchPauses, type Pauses } from "./pauses.js";

/** How many commands one at a time: `lone` counted, after `warmUp` not counted. */
export interface LoneSizes {
  lone: number;
  warmUp: number;
}

/** One subject's one-at-a-time phase: the counted commands and the service's thread's collections during them. */
export interface LoneResult {
  l: CommandLoadResult;
  gc: Pauses["gc"];
}

export const after = (ms: number) => Date.now() + ms;

/** The durable floors' readers in every bench:pairs phase: one durable reader acking the latest of each turn (floor.ts). */
export const FLOOR_READERS = { count: 1, ack: "all" as const };

/** `r`, or an error naming `what` when a command failed or the load was cut short. */
export function checked(r: CommandLoadResult, what: string): CommandLoadResult {
  if (failures(r) > 0 || r.cutShort) throw new Error(`${what}: ${failures(r)} failed, ${r.sent} sent${r.cutShort ? ", cut short by its deadline" : ""}`);
  return r;
}

/** Waits until every durable consumer of the users' stream has read (and had acked) all of it. */
export async function readersCaughtUp(client: NatsConnection, deadline: number): Promise<void> {
  const jsm = await jetstreamManager(client);
  for (;;) {
    const behind = (await jsm.consumers.list(USERS_STREAM).next()).filter((c) => c.config.durable_name && (c.num_pending > 0 || c.num_ack_pending > 0));
    if (behind.length === 0) return;
    if (Date.now() > deadline) throw new Error(`consumers of ${USERS_STREAM} still behind: ${behind.map((c) => `${c.name} ${c.num_pending} pending, ${c.num_ack_pending} unacked`).join("; ")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Nerve over `dbPath` with the bench's settings (`inherited`: the bench's own `NERVE_*` environment; `engine` as its NERVE_SQLITE_WRITER, when given); stopping it is registered for cleanup. */
export async function nerveOn(cleanup: Cleanup, inherited: Record<string, string>, natsUrl: string, dbPath: string, engine?: string): Promise<{ nerve: Nerve; stop: () => Promise<void> }> {
  const env = { ...inherited, ...(engine && { NERVE_SQLITE_WRITER: engine }), NATS_URL: natsUrl, NERVE_DB: `sqlite:${dbPath}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", NERVE_MAILBOX_SIZE: "4096" };
  const nerve = await startNerve(loadConfig(env), createLogger("silent"));
  return { nerve, stop: cleanup.add("nerve", () => nerve.stop()) };
}

/** `load`, each run preceded by `warmUp` commands of the same kind one at a time, not counted; the collections of the last counted run. */
export function warmedUp(load: LoadClient, warmUp: number): LoadClient & { warmUpEvents: () => number; gc: () => Pauses["gc"] } {
  let warmUpEvents = 0;
  let gc: Pauses["gc"] = {};
  return {
    placement: load.placement,
    run: async (spec: LoadSpec) => {
      if (warmUp > 0) warmUpEvents += checked(await load.run({ ...spec, count: warmUp, inflight: 1, tag: "pairs-lone-warm-up" }), "one at a time, the warm-up").events;
      // V8's collections on this thread (the subject's service runs on it) during the counted commands.
      const watch = watchPauses({ loop: false });
      try {
        return await load.run(spec);
      } finally {
        gc = watch.stop().gc;
      }
    },
    close: async () => undefined,
    warmUpEvents: () => warmUpEvents,
    gc: () => gc,
  };
}

/** One at a time, fresh: a Nerve started for the phase alone over `dbPath`, once its consumers are caught up; its first `warmUp` commands not counted. */
export async function nerveLone(o: { cleanup: Cleanup; inherited: Record<string, string>; natsUrl: string; dbPath: string; client: NatsConnection; load: LoadClient; ids: string[]; engine?: string | undefined } & LoneSizes): Promise<LoneResult> {
  const { nerve, stop } = await nerveOn(o.cleanup, o.inherited, o.natsUrl, o.dbPath, o.engine);
  await readersCaughtUp(o.client, after(60_000));
  const before = await usersStreamMessages(o.client);
  const warmed = warmedUp(o.load, o.warmUp);
  const l = checked(await warmed.run({ kind: "profile", ids: o.ids, count: o.lone, inflight: 1, tag: "pairs-lone", deadline: after(60_000) }), "Nerve one at a time");
  await waitConfirmed(nerve, o.client, before + warmed.warmUpEvents() + l.events, after(60_000));
  await stop();
  return { l, gc: warmed.gc() };
}

/** One at a time, fresh: a floor's own call (a new store; `durable` undefined: the floor itself), its first `warmUp` commands not counted. */
export async function floorLone(o: { natsUrl: string; load: LoadClient; ids: string[]; durable: DurableFloorKind | undefined; serverPid?: number } & LoneSizes): Promise<LoneResult> {
  const warmed = warmedUp(o.load, o.warmUp);
  const { load: l } = await benchFloor(o.natsUrl, warmed, { ids: o.ids, count: o.lone, inflight: 1, deadline: after(90_000), ...(o.serverPid !== undefined && { serverPid: o.serverPid }), ...(o.durable && { readers: FLOOR_READERS, durable: o.durable }) });
  return { l: checked(l, "one at a time"), gc: warmed.gc() };
}
