/** The service's composition root. */
export * from "./nerve.js";
export * from "./queries.js";
export * from "./metrics.js";
export * from "./signals.js";
export * from "./exit-codes.js";
