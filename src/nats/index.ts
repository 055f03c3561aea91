/** The NATS adapter: connection and streams. */
export * from "./connection.js";
export * from "./streams.js";
