/** The outbox relay. */
export * from "./relay.js";
