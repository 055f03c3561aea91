/** Configuration. */
export * from "./config.js";
export * from "./jwks-location.js";
export * from "./external-consumers.js";
