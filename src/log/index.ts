/** Logging. */
export * from "./logger.js";
