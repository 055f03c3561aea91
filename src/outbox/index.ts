/** The outbox relay. */
export * from "./relay.js";
export * from "./relay-options.js";
