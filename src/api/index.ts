/** The command and query API over NATS request-reply. */
export * from "./wire.js";
export * from "./service.js";
export * from "./admin.js";
export * from "./instance-status.js";
export * from "./routing.js";
export * from "./remote-commands.js";
