/**
 * The partitions an outbox relay publishes. With several instances on one database, seq follows
 * commit order only within a partition (one writer each), so a relay reads, holds in memory and
 * publishes only the rows of the partitions its instance owns — and stops the moment it does not.
 */
import type { Ownership } from "../cluster/index.js";
import { PARTITIONS, partitionOf } from "../cluster/partition.js";
import type { OutboxRow } from "../persistence/index.js";

/** What the relay does when a partition becomes publishable or stops being so. */
export interface PartitionChanges {
  /** `p` became publishable (acquired, or held again): rows another owner, or a pause, left behind are only in the table. */
  gained(p: number): void;
  /** `p` stopped being publishable: its rows in memory must go (the next owner reads them from the table). */
  lost(p: number): void;
}

/** A row's partition; rows written before the column existed carry none until filled in, so it comes from the id. */
export function partitionOfRow(row: OutboxRow): number {
  return row.partition_no ?? partitionOf(row.aggregate_id);
}

/**
 * The relay's view of its ownership: a bitmap of the partitions whose committed rows it keeps in
 * memory, kept current by the ownership's `acquired`/`lost` events (never recomputed per row), and
 * the fence check it runs before each publish. Without an ownership every partition is its own.
 */
export class HeldPartitions {
  readonly #on = new Uint8Array(PARTITIONS);
  /** Partitions whose fence went away without a `lost` event (a hand-off under way, a lease lapsing). */
  readonly #suspended = new Set<number>();
  readonly #ownership: Ownership | undefined;
  readonly #changes: PartitionChanges;
  readonly #onAcquired = (p: number): void => this.#gain(p);
  readonly #onLost = (p: number): void => this.#lose(p);

  constructor(ownership: Ownership | undefined, changes: PartitionChanges) {
    this.#ownership = ownership;
    this.#changes = changes;
  }

  /** Takes the ownership's partitions as they are now and follows its events until {@link detach}. */
  attach(): void {
    this.#suspended.clear();
    if (!this.#ownership) {
      this.#on.fill(1);
      return;
    }
    this.#on.fill(0);
    for (const p of this.#ownership.held()) this.#on[p] = 1;
    this.#ownership.on("acquired", this.#onAcquired);
    this.#ownership.on("lost", this.#onLost);
  }

  /** Stops following the ownership's events (the relay stopped; the ownership lives on). */
  detach(): void {
    this.#ownership?.off("acquired", this.#onAcquired);
    this.#ownership?.off("lost", this.#onLost);
  }

  /** Whether rows of `p` handed over at commit are kept in memory: the live path's per-row check. */
  has(p: number): boolean {
    return this.#on[p] === 1;
  }

  /** Whether a row of `p` may be published right now: its fence, by the lease and this process's own clock. */
  mayPublish(p: number): boolean {
    return this.#ownership === undefined || this.#ownership.fence(p) !== undefined;
  }

  /** The partitions a read of the table covers now; undefined for all of them (no ownership). */
  readable(): number[] | undefined {
    const held = this.#ownership?.held();
    // A suspended partition's rows would only be read to be dropped, a full batch of them again and again.
    return held && this.#suspended.size > 0 ? held.filter((p) => !this.#suspended.has(p)) : held;
  }

  /** `p`'s fence is gone though no `lost` came: take none of its rows until it is held again. */
  suspend(p: number): void {
    if (this.#on[p] === 0) return;
    this.#on[p] = 0;
    this.#suspended.add(p);
    this.#changes.lost(p);
  }

  /**
   * Takes back suspended partitions whose fence is valid again (a hand-off that failed keeps the
   * partition here, with no event). Called before each pass; costs nothing while none is suspended.
   */
  recheck(): void {
    if (this.#suspended.size === 0) return;
    for (const p of [...this.#suspended]) if (this.mayPublish(p)) this.#gain(p);
  }

  #gain(p: number): void {
    this.#suspended.delete(p);
    this.#on[p] = 1;
    this.#changes.gained(p);
  }

  #lose(p: number): void {
    this.#suspended.delete(p);
    if (this.#on[p] === 0) return;
    this.#on[p] = 0;
    this.#changes.lost(p);
  }
}
