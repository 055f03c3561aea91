/** Creates the five event streams when absent and refuses ones whose config conflicts with the contract. */
import { nanos } from "@nats-io/nats-core";
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { Streams } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import { JetStreamUnavailableError, isTransientJetStreamError, retryTransient } from "./transient-errors.js";

/** JetStream's duplicate window for the event streams: at least the contract's two minutes. */
export const DUPLICATE_WINDOW_MS = 120_000;

/** The stream configuration the contract asks for, with `replicas` copies (NERVE_STREAM_REPLICAS). */
export function streamConfig(name: string, subjects: string, replicas = 1): Partial<StreamConfig> & { name: string } {
  return {
    name,
    subjects: [subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    num_replicas: replicas,
  };
}

/** Options of {@link ensureStreams}. */
export interface EnsureStreamsOptions {
  /** Replicas of each stream (NERVE_STREAM_REPLICAS): new streams get them, existing ones must have them. Default 1. */
  replicas?: number;
  /** Where the retries of a JetStream that is electing its leaders are logged. */
  logger?: Logger;
  /** How long a transiently unavailable JetStream is waited for before the start fails (default 30 s). */
  retryMs?: number;
}

/** The stream cannot get its replicas: the cluster is too small (or no cluster); raising them again cannot help. */
export class StreamReplicasError extends Error {
  override readonly name = "StreamReplicasError";
}

// 10074: replicas > 1 on a server without a cluster; 10005: no suitable peers for placement; 10023: insufficient resources.
const NOT_CLUSTERED = 10074;
const PLACEMENT = new Set([10005, 10023]);

const apiCode = (err: unknown): unknown => (err as { code?: unknown } | undefined)?.code;

/**
 * Ensures every event stream exists with a compatible configuration and `replicas` replicas; throws
 * naming what conflicts. Nerve never changes an existing stream: a mismatch is the operator's call.
 * While JetStream is electing its leaders (a cluster starting or failing over) it retries, bounded;
 * give it a manager made with `checkAPI: false`, or nats.js's own first call fails before any retry.
 */
export async function ensureStreams(jsm: JetStreamManager, opts: EnsureStreamsOptions = {}): Promise<void> {
  const replicas = opts.replicas ?? 1;
  // A cluster still forming may not have the peers for a replicated stream yet: worth the same wait.
  const retryable = (err: unknown) => isTransientJetStreamError(err) || (err instanceof StreamReplicasError && PLACEMENT.has(apiCode(err.cause) as number));
  try {
    await retryTransient("ensuring the event streams", () => ensureOnce(jsm, replicas), { logger: opts.logger, maxMs: opts.retryMs, retryable });
  } catch (err) {
    // Still too few peers at the end of the wait: that is the message, not "unavailable".
    throw err instanceof JetStreamUnavailableError && err.cause instanceof StreamReplicasError ? err.cause : err;
  }
}

async function ensureOnce(jsm: JetStreamManager, replicas: number): Promise<void> {
  for (const s of Object.values(Streams)) {
    const wanted = streamConfig(s.name, s.subjects, replicas);
    let existing: StreamConfig | undefined;
    try {
      existing = (await jsm.streams.info(s.name)).config;
    } catch (err) {
      if (!/stream not found/i.test(String((err as Error).message))) throw err;
    }
    if (!existing) {
      await create(jsm, wanted, replicas);
      continue;
    }
    const problems: string[] = [];
    if (existing.subjects.length !== 1 || existing.subjects[0] !== s.subjects) problems.push(`subjects ${JSON.stringify(existing.subjects)} ≠ ["${s.subjects}"]`);
    if (existing.storage !== StorageType.File) problems.push(`storage ${existing.storage} ≠ file`);
    if (existing.retention !== RetentionPolicy.Limits) problems.push(`retention ${existing.retention} ≠ limits`);
    if (existing.duplicate_window < nanos(DUPLICATE_WINDOW_MS)) problems.push(`duplicate_window shorter than ${DUPLICATE_WINDOW_MS / 1000}s`);
    if (problems.length > 0) throw new Error(`stream ${s.name} conflicts with the contract: ${problems.join("; ")}`);
    const have = existing.num_replicas || 1;
    if (have !== replicas) {
      throw new Error(
        `stream ${s.name} has ${have} replica${have === 1 ? "" : "s"} but NERVE_STREAM_REPLICAS is ${replicas}: ` +
          `set NERVE_STREAM_REPLICAS=${have}, or change the stream to ${replicas} (\`nats stream edit ${s.name} --replicas ${replicas}\`; ` +
          `more than 1 needs a JetStream cluster of at least that many servers) — Nerve never changes an existing stream`,
      );
    }
  }
}

async function create(jsm: JetStreamManager, wanted: Partial<StreamConfig> & { name: string }, replicas: number): Promise<void> {
  try {
    await jsm.streams.add(wanted);
  } catch (err) {
    const code = apiCode(err);
    if (replicas > 1 && (code === NOT_CLUSTERED || PLACEMENT.has(code as number))) {
      throw new StreamReplicasError(
        `cannot create stream ${wanted.name} with ${replicas} replicas: ${replicas} replicas need a JetStream cluster of at least ${replicas} servers ` +
          `(nats-server: ${(err as Error).message}); run such a cluster or set NERVE_STREAM_REPLICAS=1`,
        { cause: err },
      );
    }
    throw err;
  }
}
