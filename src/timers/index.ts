/** Durable timers. */
export * from "./timer-service.js";
