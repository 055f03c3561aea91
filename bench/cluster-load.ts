/**
 * The light load of the hand-off runs: UpdateUserProfile at a steady rate over the bench's users, each
 * with an Idempotency-Key and retried with it (after `unavailable`, no responders or a timeout) until
 * answered, as a careful client does. Every acknowledgement is kept with its partition and the
 * instance that answered (the `Nerve-Instance` reply header), which is what per-partition gaps are
 * measured from.
 */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack, encodeMsgPack } from "../contracts/index.js";
import { partitionOf } from "../src/cluster/index.js";

/** One acknowledged command. */
export interface Ack {
  partition: number;
  instance: string;
  /** performance.now() when the reply arrived. */
  at: number;
  /** From its first attempt to this reply, retries included (ms). */
  took: number;
}

/** Options of {@link keyedLoad}. */
export interface KeyedLoadOptions {
  users: string[];
  /** Commands started per second. */
  rate: number;
  /** Most commands in flight (retries included). */
  maxInFlight: number;
  /** Makes bios and keys unique per run of the bench. */
  tag: string;
  /** Reply timeout of one attempt (ms). */
  timeoutMs?: number;
  /** Pause before a retry (ms): the resolution of a measured gap. */
  backoffMs?: number;
  /** A command not answered this long after its first attempt is given up (ms). */
  giveUpMs?: number;
}

/** A running keyed load. */
export interface KeyedLoad {
  readonly acks: Ack[];
  /** Acknowledgements so far (the array may be trimmed by its user). */
  readonly ackCount: number;
  /** Failed attempts by reason (each was retried). */
  readonly retried: Record<string, number>;
  /** The latest failed attempt per partition: why, and when (performance.now()). */
  readonly lastFailure: Map<number, { why: string; at: number }>;
  /** Answers no retry can change (a refusal or `internal`): a bug. */
  readonly wrong: string[];
  /** Commands given up after `giveUpMs`. */
  readonly gaveUp: number;
  /** Stops starting commands and waits for those in flight. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts the load; it runs until stopped. */
export function keyedLoad(nc: NatsConnection, o: KeyedLoadOptions): KeyedLoad {
  const timeout = o.timeoutMs ?? 2000;
  const backoff = o.backoffMs ?? 20;
  const giveUp = o.giveUpMs ?? 30_000;
  const acks: Ack[] = [];
  const retried: Record<string, number> = {};
  const wrong: string[] = [];
  const lastFailure = new Map<number, { why: string; at: number }>();
  let gaveUp = 0;
  let ackCount = 0;
  let stopped = false;
  let next = 0;
  let base = performance.now();
  const spacing = 1000 / o.rate;

  const one = async (i: number): Promise<void> => {
    const userId = o.users[i % o.users.length]!;
    const bio = `${o.tag}-${i}`;
    const data = encodeMsgPack({ profile_data: { bio } });
    const headers = natsHeaders();
    headers.set("Content-Type", "application/msgpack");
    headers.set("Idempotency-Key", `k-${bio}`);
    const started = performance.now();
    for (;;) {
      let why: string;
      try {
        const reply = await nc.request(`cmd.users.UpdateUserProfile.${userId}`, data, { timeout, headers });
        const decoded = decodeMsgPack(reply.data);
        const body = decoded.ok ? (decoded.value as { ok?: boolean; error?: { code?: string; message?: string } }) : undefined;
        if (body?.ok === true) {
          const at = performance.now();
          ackCount++;
          acks.push({ partition: partitionOf(userId), instance: reply.headers?.get("Nerve-Instance") ?? "", at, took: at - started });
          return;
        }
        const code = body?.error?.code ?? "undecodable";
        if (code !== "unavailable") {
          wrong.push(`${userId}: ${code} ${body?.error?.message ?? ""}`);
          return;
        }
        why = `unavailable: ${body?.error?.message ?? ""}`.slice(0, 120);
      } catch (err) {
        const m = (err as Error).message ?? String(err);
        why = /no responders/i.test(m) ? "no responders" : /timeout/i.test(m) || (err as Error).name === "TimeoutError" ? "timeout" : m.slice(0, 60);
      }
      lastFailure.set(partitionOf(userId), { why, at: performance.now() });
      const kind = why.startsWith("unavailable") ? "unavailable" : why;
      retried[kind] = (retried[kind] ?? 0) + 1;
      if (performance.now() - started > giveUp) {
        gaveUp++;
        return;
      }
      await sleep(backoff);
    }
  };

  const worker = async (): Promise<void> => {
    while (!stopped) {
      const i = next++;
      const now = performance.now();
      // After a stall, start again from now instead of firing the missed commands all at once.
      if (base + i * spacing < now - 250) base = now - i * spacing;
      const due = base + i * spacing;
      if (due > now) await sleep(due - now);
      if (stopped) return;
      await one(i);
    }
  };
  const workers = Array.from({ length: o.maxInFlight }, worker);
  return {
    acks,
    retried,
    lastFailure,
    wrong,
    get gaveUp() {
      return gaveUp;
    },
    get ackCount() {
      return ackCount;
    },
    async stop() {
      stopped = true;
      await Promise.all(workers);
    },
  };
}
