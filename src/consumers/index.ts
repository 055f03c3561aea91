/** Subscribing contexts: durable JetStream consumers with inbox idempotency, dead letters and replay. */
export * from "./subscriber.js";
export * from "./entities.js";
export * from "./event-handler.js";
export * from "./dead-letters.js";
export * from "./runner.js";
export * from "./consumer-manager.js";
export * from "./inbox-prune.js";
export * from "./replay-progress.js";
