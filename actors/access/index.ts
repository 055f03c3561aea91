/** The Access context's aggregate. */
export * from "./access-record.js";
