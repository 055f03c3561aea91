/**
 * Which partitions this instance may decide and commit for, and under which fencing token. The runtime
 * (command bus, writer, relay, timers) asks this and nothing else about the cluster: one instance on
 * SQLite owns everything for good ({@link SoleOwnership}); instances sharing PostgreSQL hold leases.
 */
import { EventEmitter } from "node:events";
import { PARTITIONS } from "./partition.js";

/** The fencing token of a partition: the lease's epoch, checked by every transaction that writes in it. */
export interface Fence {
  readonly partition: number;
  readonly epoch: number;
}

/** Events of an ownership: a partition acquired (with its new epoch), or lost or released. */
export type OwnershipEvents = { acquired: [partition: number, epoch: number]; lost: [partition: number] };

/** What the runtime needs to know about ownership. */
export interface Ownership extends EventEmitter<OwnershipEvents> {
  /** This instance's name (leases, logs, the `Nerve-Instance` reply header). */
  readonly instanceId: string;
  /** Whether commits must check their fences in the database (false when nobody else can write). */
  readonly fenced: boolean;
  /**
   * The fence of `partition` when this instance holds it now — its lease valid by this process's own
   * monotonic clock, and not being handed off — else undefined: then it must not decide, reply or publish.
   */
  fence(partition: number): Fence | undefined;
  /** The partitions held now (by the same rule as {@link fence}). */
  held(): number[];
}

/** The only instance (SQLite): every partition, epoch 0, forever; nothing to check in the database. */
export class SoleOwnership extends EventEmitter<OwnershipEvents> implements Ownership {
  readonly fenced = false;
  readonly #fences: Fence[];

  constructor(readonly instanceId: string) {
    super();
    this.#fences = Array.from({ length: PARTITIONS }, (_, partition) => ({ partition, epoch: 0 }));
  }

  fence(partition: number): Fence | undefined {
    return this.#fences[partition];
  }

  held(): number[] {
    return this.#fences.map((f) => f.partition);
  }
}

/**
 * An instance without the `commands` role: it owns no partition, so it decides nothing itself — its
 * process managers send their commands to the owners, and it reads aggregates from their snapshots.
 */
export class NoOwnership extends EventEmitter<OwnershipEvents> implements Ownership {
  readonly fenced = true;

  constructor(readonly instanceId: string) {
    super();
  }

  fence(): Fence | undefined {
    return undefined;
  }

  held(): number[] {
    return [];
  }
}
