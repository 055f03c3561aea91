/** The Policies context's aggregate. */
export * from "./refund-policy.js";
