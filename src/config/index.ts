/** Configuration. */
export * from "./config.js";
