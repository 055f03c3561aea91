/** The partitions' ownership through leases: {@link Ownership} over the `partitions` group of {@link Leases}. */
import { EventEmitter } from "node:events";
import { PARTITION_GROUP } from "./fencing.js";
import { Leases, type LeaseOptions } from "./leases.js";
import type { Fence, Ownership, OwnershipEvents } from "./ownership.js";
import { PARTITIONS } from "./partition.js";

/** Options of partition leases: those of {@link Leases}, less the group and keys, with partition numbers. */
export type PartitionLeaseOptions = Omit<LeaseOptions, "group" | "keys" | "drain" | "released"> & {
  drain?: (partition: number) => Promise<void>;
  released?: (partition: number) => void;
};

/** Ownership of the 64 partitions by leases in PostgreSQL. */
export class PartitionLeases extends EventEmitter<OwnershipEvents> implements Ownership {
  readonly fenced = true;
  readonly leases: Leases;

  constructor(opts: PartitionLeaseOptions) {
    super();
    this.leases = new Leases({
      ...opts,
      group: PARTITION_GROUP,
      keys: Array.from({ length: PARTITIONS }, (_, p) => String(p)),
      drain: opts.drain ? (k) => opts.drain!(Number(k)) : undefined,
      released: opts.released ? (k) => opts.released!(Number(k)) : undefined,
    });
    this.leases.on("acquired", (k, epoch) => this.emit("acquired", Number(k), epoch));
    this.leases.on("lost", (k) => this.emit("lost", Number(k)));
  }

  get instanceId(): string {
    return this.leases.instanceId;
  }

  fence(partition: number): Fence | undefined {
    const f = this.leases.fence(String(partition));
    return f ? { partition, epoch: f.epoch } : undefined;
  }

  held(): number[] {
    return this.leases
      .held()
      .map(Number)
      .sort((a, b) => a - b);
  }

  /** Joins and takes the partitions that belong here. */
  start(): Promise<void> {
    return this.leases.start();
  }

  /** Looks again now (a partition was released somewhere). */
  wake(): void {
    this.leases.wake();
  }

  /** Releases every partition (after the caller drained them). */
  stop(): Promise<void> {
    return this.leases.stop();
  }
}
