/** The outbox relay's options, figures and collaborators. */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../log/index.js";
import type { Repository } from "../persistence/index.js";
import type { Ownership } from "../cluster/index.js";

/** Options of the relay. */
export interface RelayOptions {
  repo: Repository;
  js: JetStreamClient;
  /** Used after a crash or a failed publish to ask the stream what it already holds. */
  jsm: JetStreamManager;
  logger: Logger;
  /** Most publishes awaiting their JetStream ack at once. */
  window: number;
  /** Rows read per pass. */
  batchSize?: number;
  /** Fallback poll when nobody wakes the relay (recovery after a crash). */
  pollMs?: number;
  /**
   * Who deletes published rows. The group-commit writer does it within its next transaction; without
   * one the relay deletes them itself, a transaction per pass.
   */
  deleter?: PublishedRowDeleter | undefined;
  /** Most committed rows held in memory; past it the relay drops them and reads the outbox instead. */
  memoryLimit?: number;
  /** Most bytes of event bodies held in memory ({@link MEMORY_BYTES_LIMIT} unless set); past it, as past `memoryLimit`. */
  memoryBytesLimit?: number;
  /** How often a live relay reads the table again ({@link RESCAN_MS} unless set). */
  rescanMs?: number;
  /** Longest wait for the deletion of published rows before the table is read anyway ({@link RELEASE_WAIT_MS} unless set). */
  releaseWaitMs?: number;
  /**
   * Whose partitions this relay publishes (several instances on one database): it reads, keeps and
   * publishes only their rows, checks the fence before every publish, and reads the table again for a
   * partition it acquires. Without one, every row is its own (one instance).
   */
  ownership?: Ownership | undefined;
  /** Told each acknowledged publish's seconds from publish to JetStream's ack. */
  publishAck?: ((seconds: number) => void) | undefined;
}

/** Deletes outbox rows once they are published. */
export interface PublishedRowDeleter {
  /** Deletes these rows soon. */
  release(seqs: readonly number[]): void;
  /** Resolves once every row released so far is deleted. */
  released(): Promise<void>;
}

/**
 * How often a live relay looks in the outbox table for rows committed without being handed over (a commit
 * whose answer was lost, anything else that wrote the table): otherwise only a restart, a failure or a
 * partition's move would read them. One short query; a verified scan only when it finds one.
 */
export const RESCAN_MS = 10_000;

/** Longest wait for the deletion of published rows before the table is read anyway: 5 s. */
export const RELEASE_WAIT_MS = 5_000;

/** Most bytes of event bodies a live relay holds in memory by default: 64 MiB (its reads of the table are 1,000 rows each). */
export const MEMORY_BYTES_LIMIT = 64 * 1024 * 1024;

/** A relay that has had no publish acknowledged for this long holds no writer back. */
export const STALLED_MS = 500;

/** Figures of the relay. */
export interface RelayStats {
  published: number;
  duplicates: number;
  failures: number;
  /** Rows found already stored when verifying after a crash or failure (not published again). */
  verified: number;
  /**
   * Rows the verification found missing from the stream below their aggregate's last stored version:
   * published then, out of order (each logged as an error: they were committed without reaching the relay).
   */
  gaps: number;
  /** Times a live relay found rows in the table it was never handed, and read it with the stream check. */
  lateScans: number;
  /** Passes that read the outbox table (start, after a failure, or when memory could not keep up). */
  scans: number;
  /** Passes fed from memory, with the rows the writer handed over at commit. */
  livePasses: number;
  /** Rows not published because their partition was no longer held when their turn came (its next owner publishes them). */
  dropped: number;
  /** Times memory would have held more rows or bytes than its limits: dropped, and the table read instead. */
  overflows: number;
}
