/** Command-line helpers: the local NATS starter, the operator client, and the `nerve` CLI as a function. */
export * from "./local-nats.js";
export * from "./admin-client.js";
export * from "./run.js";
