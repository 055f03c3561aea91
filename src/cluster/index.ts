/** Scale-out (CONTRACT.md §8): partitions of the aggregates and who owns them. */
export * from "./partition.js";
export * from "./ownership.js";
export * from "./rendezvous.js";
export * from "./entities.js";
export * from "./fencing.js";
export * from "./leases.js";
