/** The Orders context's aggregate. */
export * from "./order.js";
