/** The NATS adapter: connection, streams, and which JetStream failures are transient. */
export * from "./connection.js";
export * from "./streams.js";
export * from "./transient-errors.js";
export * from "./external-consumers.js";
export * from "./reply-guard.js";
export * from "./connectivity.js";
