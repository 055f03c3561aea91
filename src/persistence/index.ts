/** Persistence: MikroORM on SQLite or PostgreSQL, group commit, the write-side tables. */
export * from "./entities.js";
export * from "./database.js";
export * from "./commit-batch.js";
export * from "./group-commit.js";
export { CommitOutcomeUnknown } from "./commit-outcome.js";
export * from "./consumer-batch.js";
export * from "./repository.js";
export * from "./sqlite-lock.js";
export * from "./idempotency-prune.js";
export * from "./query-thread.js";
export * from "./query-gate.js";
export * from "./postgres.js";
export * from "./integer-column.js";
export type { WorkerHeap } from "./worker-heap.js";
