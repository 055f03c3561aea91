/** The wire contract of Nerve as code: the single source of truth for subjects, schemas and codecs. */
export * from "./values.js";
export * from "./errors.js";
export * from "./subjects.js";
export * from "./payloads.js";
export * from "./events.js";
export * from "./commands.js";
export * from "./queries.js";
export * from "./replies.js";
export * from "./websocket.js";
export * from "./upcasters.js";
export * from "./codec.js";
