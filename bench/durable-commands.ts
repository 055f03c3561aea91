/** Sections 2 and 3: durable commands through the running service, their confirmation in JetStream, and scaling with aggregates. */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNerve, type Nerve } from "../src/app/index.js";
import { loadConfig } from "../src/config/index.js";
import { createLogger } from "../src/log/index.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import type { Cleanup } from "./cleanup.js";
import type { WriterStats } from "../src/persistence/index.js";
import { failures, type CommandLoadResult } from "./command-load.js";
import type { LoadClient } from "./load-client.js";
import type { Rig } from "./rig.js";
import { cpuMeter } from "./thread-cpu.js";

/** The users' stream, where every User event lands. */
export const USERS_STREAM = "EVENTS_USERS";

/** Group-commit figures of one phase. */
export interface WriterDelta {
  transactions: number;
  writes: number;
  averageBatch: number;
  largestBatch: number;
  retriedAlone: number;
}

/** The outcome of one measured load, with its confirmation in the stream when it was awaited. */
export interface DurablePhase {
  label: string;
  aggregates: number;
  load: CommandLoadResult;
  writer: WriterDelta;
  /** The service's event loop during the load: how busy it was, and its busy time per command. */
  eventLoop: { utilization: number; busyMsPerCommand: number; processCpuMsPerCommand: number; mainThreadCpuMsPerCommand: number | undefined };
  /** nats-server's CPU per command (all its threads), when its pid is known. */
  serverCpuMsPerCommand: number | undefined;
  /** Messages the stream must hold once this phase's events are all published. */
  expectedMessages: number;
  /** From the first command sent to the last event stored in the stream with the outbox empty. */
  confirmation?: { totalSeconds: number; afterLastReplySeconds: number; endToEndPerSecond: number; streamMessages: number };
}

/** The ids of the bench's users. */
export function userIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `bench-u${String(i).padStart(6, "0")}`);
}

function writerDelta(before: WriterStats, after: WriterStats): WriterDelta {
  const transactions = after.transactions - before.transactions;
  const writes = after.writes - before.writes;
  return {
    transactions,
    writes,
    averageBatch: transactions ? writes / transactions : 0,
    largestBatch: after.largestBatch,
    retriedAlone: after.retriedAlone - before.retriedAlone,
  };
}

/** Registers users over NATS (not measured beyond the load itself); throws when any registration fails. */
export async function registerUsers(load: LoadClient, ids: string[], inflight: number, deadline: number): Promise<CommandLoadResult> {
  const r = await load.run({ kind: "register", ids, count: ids.length, inflight, tag: "", deadline });
  if (failures(r) > 0 || r.cutShort) throw new Error(`registering ${ids.length} users failed: ${JSON.stringify(r.failed)}${r.cutShort ? " (deadline)" : ""}`);
  return r;
}

/** Options of one UpdateUserProfile load. */
export interface ProfileLoadOptions {
  label: string;
  ids: string[];
  count: number;
  inflight: number;
  deadline: number;
  /** Wait until every event is in the stream and the outbox is empty, and time it. */
  confirm?: { deadline: number };
  /** nats-server's pid, to count its CPU too. */
  serverPid?: number;
}

/** Sends UpdateUserProfile round-robin over `ids`, each with a new bio so none is a no-op. */
export async function profileLoad(nerve: Nerve, client: NatsConnection, load: LoadClient, o: ProfileLoadOptions): Promise<DurablePhase> {
  const jsm = await jetstreamManager(client);
  const before = (await jsm.streams.info(USERS_STREAM)).state.messages;
  const writerBefore = { ...nerve.writer.stats };
  const tag = `${o.label}-${Date.now().toString(36)}`;
  const elu0 = performance.eventLoopUtilization();
  const cpu = cpuMeter(o.serverPid);
  const result = await load.run({ kind: "profile", ids: o.ids, count: o.count, inflight: o.inflight, tag, deadline: o.deadline });
  const elu = performance.eventLoopUtilization(elu0);
  const spent = cpu();
  const lastReply = Date.now();
  const phase: DurablePhase = {
    label: o.label,
    aggregates: o.ids.length,
    load: result,
    writer: writerDelta(writerBefore, nerve.writer.stats),
    eventLoop: {
      utilization: elu.utilization,
      busyMsPerCommand: elu.active / result.sent,
      processCpuMsPerCommand: spent.processMs / result.sent,
      mainThreadCpuMsPerCommand: spent.mainThreadMs === undefined ? undefined : spent.mainThreadMs / result.sent,
    },
    serverCpuMsPerCommand: spent.serverMs === undefined ? undefined : spent.serverMs / result.sent,
    expectedMessages: before + result.events,
  };
  if (o.confirm) {
    const messages = await waitConfirmed(nerve, client, phase.expectedMessages, o.confirm.deadline);
    const done = Date.now();
    const totalSeconds = (done - result.startedAt) / 1000;
    phase.confirmation = { totalSeconds, afterLastReplySeconds: (done - lastReply) / 1000, endToEndPerSecond: result.ok / totalSeconds, streamMessages: messages };
  }
  return phase;
}

/** Messages in the users' stream now. */
export async function usersStreamMessages(client: NatsConnection): Promise<number> {
  return (await (await jetstreamManager(client)).streams.info(USERS_STREAM)).state.messages;
}

/** Polls until the stream holds `expected` messages and the outbox is empty; throws at the deadline. */
export async function waitConfirmed(nerve: Nerve, client: NatsConnection, expected: number, deadline: number): Promise<number> {
  const jsm = await jetstreamManager(client);
  for (;;) {
    const messages = (await jsm.streams.info(USERS_STREAM)).state.messages;
    if (messages >= expected && (await nerve.bus.repo.outboxSize()) === 0) {
      if (messages > expected) throw new Error(`${USERS_STREAM} holds ${messages} messages, expected ${expected}: duplicates reached the stream`);
      return messages;
    }
    if (Date.now() > deadline) {
      throw new Error(`events not confirmed in time: ${messages}/${expected} in ${USERS_STREAM}, ${await nerve.bus.repo.outboxSize()} in the outbox`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A silent Nerve on a temporary SQLite file of its own (both released by `cleanup`), with `extra` on top of the
 * benches' settings, and `users` users registered through the rig's load client and confirmed in the stream;
 * `stop` ends it before the cleanup does (once).
 */
export async function startNerveWithUsers(cleanup: Cleanup, rig: Rig, users: number, extra: Record<string, string>): Promise<{ nerve: Nerve; stop: () => Promise<void>; ids: string[] }> {
  const sqlite = await tempSqlitePath();
  cleanup.add("sqlite", () => sqlite.cleanup());
  const env = { NATS_URL: rig.nats.url, NERVE_DB: `sqlite:${sqlite.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "silent", NERVE_MAILBOX_SIZE: "4096", ...extra };
  const nerve = await startNerve(loadConfig(env), createLogger("silent"));
  const stop = cleanup.add("nerve", () => nerve.stop());
  const ids = userIds(users);
  await registerUsers(rig.load, ids, 256, Date.now() + 30_000);
  await waitConfirmed(nerve, rig.client, ids.length, Date.now() + 30_000);
  return { nerve, stop, ids };
}
