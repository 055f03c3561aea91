/** Shared test helpers; each concern lives in its own file and is re-exported here. */
export * from "./nats-server.js";
export * from "./tmp.js";
export * from "./nerve.js";
export * from "./decider-spec.js";
export * from "./service-process.js";
export * from "./writes.js";
export * from "./postgres.js";
export * from "./cluster.js";
export * from "./nats-cluster.js";
export * from "./otlp-receiver.js";
export * from "./sqlite-db.js";
export * from "./nats-streams.js";
export * from "./tcp-proxy.js";
