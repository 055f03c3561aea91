/** Every aggregate's pure decider, and the deciders and views keyed by context token. */
import type { AggregateType, Context, QueryResult } from "../contracts/index.js";
import { accessRecordDecider, accessView } from "./access/index.js";
import { courseDecider, courseView } from "./courses/index.js";
import { orderDecider, orderView } from "./orders/index.js";
import { policyView, refundPolicyDecider } from "./policies/index.js";
import { userDecider, userView } from "./users/index.js";

export * from "./decider.js";
export * from "./facts.js";
export * from "./users/index.js";
export * from "./policies/index.js";
export * from "./courses/index.js";
export * from "./orders/index.js";
export * from "./access/index.js";

/** The decider of each context's aggregate. */
export const deciders = {
  users: userDecider,
  courses: courseDecider,
  policies: refundPolicyDecider,
  orders: orderDecider,
  access: accessRecordDecider,
} as const satisfies Record<Context, { readonly aggregateType: AggregateType }>;

/** The aggregate-read view of each context (GetUser, GetCourse, GetPolicy, GetOrder, GetAccess). */
export const views = {
  users: userView,
  courses: courseView,
  policies: policyView,
  orders: orderView,
  access: accessView,
} as const satisfies {
  users: (s: never, version: number) => QueryResult<"GetUser">;
  courses: (s: never, version: number) => QueryResult<"GetCourse">;
  policies: (s: never, version: number) => QueryResult<"GetPolicy">;
  orders: (s: never, version: number) => QueryResult<"GetOrder">;
  access: (s: never, version: number) => QueryResult<"GetAccess">;
};
