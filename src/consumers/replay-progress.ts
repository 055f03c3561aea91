/** How far a replay has come: where it ends, read when it starts, and its reports until its durables reach it. */
import type { JetStreamManager } from "@nats-io/jetstream";
import { errors } from "../../contracts/index.js";
import type { ConsumerRunner } from "./runner.js";
import { sleep } from "../supervision/index.js";

/** How long the reads of a replay's progress may fail in a row before the replay is reported failed (ms). */
export const FOLLOW_GIVE_UP_MS = 60_000;

/** Progress of a replay. */
export interface ReplayProgress {
  consumer: string;
  done: number;
  total: number;
}

/** Where a replay ends: how many events it reads, and each binding's last event at its start (by "<stream> <filter>"). */
export interface ReplayEnd {
  total: number;
  lastSeq: Map<string, number>;
}

/**
 * A replay's end, read while nothing reads the runner's new durables: how many events each has (a filtered
 * durable's own count, not its stream's) and its last one as of now. Under steady traffic the durable is
 * rarely seen with nothing pending at all, so waiting for that could last as long as the traffic does.
 */
export async function replayEnd(runner: ConsumerRunner, jsm: JetStreamManager): Promise<ReplayEnd> {
  const floors = await runner.ackFloors();
  const total = floors.reduce((n, f) => n + f.pending + f.ackPending, 0);
  const lastSeq = new Map<string, number>();
  for (const b of runner.bindings) {
    const last = await jsm.streams.getMessage(b.stream, { last_by_subj: b.filter });
    lastSeq.set(`${b.stream} ${b.filter}`, last?.seq ?? 0);
  }
  return { total, lastSeq };
}

/**
 * Reports a replay's progress until the runner has caught up with its end; done only grows, and ends at
 * total. Stops with `unavailable` once `here()` says the consumer no longer belongs here: its next holder
 * reads on.
 */
export async function followReplay(runner: ConsumerRunner, { total, lastSeq }: ReplayEnd, here: () => boolean, onProgress: (p: ReplayProgress) => void, giveUpAfterMs = FOLLOW_GIVE_UP_MS): Promise<ReplayProgress> {
  const name = runner.name;
  let done = 0;
  let failingSince: number | undefined;
  for (;;) {
    let floors: Awaited<ReturnType<ConsumerRunner["ackFloors"]>>;
    try {
      floors = await runner.ackFloors();
      failingSince = undefined;
    } catch (err) {
      // A read of the durables that failed (NATS away for a moment, a stream leader's election) stops
      // nothing: the runner reads on. One such failure ended the following and the replay was reported
      // failed ("timeout") while it went on to the end; it is read again until it has failed for a minute.
      failingSince ??= performance.now();
      if (performance.now() - failingSince >= giveUpAfterMs) throw err;
      if (!here()) throw errors.unavailable(`consumer ${name} no longer runs here: its next holder goes on with the replay (${done} of ${total} done here)`);
      await sleep(500);
      continue;
    }
    const pending = floors.reduce((n, l) => n + l.pending + l.ackPending, 0);
    const caughtUp = replayCaughtUp(floors, lastSeq);
    // What arrived since the start is pending too: without the max, live traffic would move done back.
    done = caughtUp ? total : Math.max(done, Math.min(total, total - pending));
    const p = { consumer: name, done, total };
    onProgress(p);
    if (caughtUp) return p;
    if (!here()) throw errors.unavailable(`consumer ${name} no longer runs here: its next holder goes on with the replay (${done} of ${total} done here)`);
    await sleep(100);
  }
}

/**
 * Whether a replay has caught up: every binding's durable has acknowledged everything up to its last
 * event as of the replay's start (`lastSeq`, by "<stream> <filter>"), or has nothing left at all. What
 * arrived since is the live traffic's, which a replay need not wait for.
 */
export function replayCaughtUp(floors: readonly { stream: string; filter: string; ackFloor: number; pending: number; ackPending: number }[], lastSeq: ReadonlyMap<string, number>): boolean {
  return floors.every((f) => f.pending + f.ackPending === 0 || f.ackFloor >= (lastSeq.get(`${f.stream} ${f.filter}`) ?? 0));
}
