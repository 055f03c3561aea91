/** Supervision of background work: failures logged, counted and restarted, never the end of the process. */
export * from "./supervision.js";
