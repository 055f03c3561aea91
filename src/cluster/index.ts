/** Scale-out (CONTRACT.md §8): partitions of the aggregates, who owns them, and the fences that keep former owners out. */
export * from "./partition.js";
export * from "./ownership.js";
export * from "./rendezvous.js";
export * from "./entities.js";
export * from "./leases.js";
export * from "./fencing.js";
export * from "./partition-leases.js";
