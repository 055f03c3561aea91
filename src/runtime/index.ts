/** The actor runtime: keyed actors, the command bus, aggregate modules. */
export * from "./actor.js";
export * from "./actor-system.js";
export * from "./aggregate-module.js";
export * from "./command-bus.js";
export * from "./stable-json.js";
export * from "./uuid7.js";
