/** The Users context's aggregate. */
export * from "./user.js";
