/** Command-line helpers: the local NATS starter and the operator client. */
export * from "./local-nats.js";
export * from "./admin-client.js";
