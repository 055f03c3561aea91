/** Durable timers. */
export * from "./timer-kind.js";
export { timerFollowUp, timerOp } from "./timer-rows.js";
export * from "./timer-service.js";
