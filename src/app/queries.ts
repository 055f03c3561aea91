/** Query handlers answered from the write side: aggregate views (from actor state) and audit history. */
import type { QueryType } from "../../contracts/index.js";
import type { QueryHandler } from "../api/index.js";
import type { CommandBus } from "../runtime/index.js";
import { history } from "./history.js";

/** Aggregate reads: they see every command already answered, because they read the actor's state; History upcasts old versions. */
export function aggregateQueries(bus: CommandBus): Partial<Record<QueryType, QueryHandler>> {
  const handlers: Partial<Record<QueryType, QueryHandler>> = { History: history(bus.repo) };
  const views = [
    ["GetUser", "users", "user_id"],
    ["GetPolicy", "policies", "policy_id"],
    ["GetCourse", "courses", "course_id"],
    ["GetOrder", "orders", "order_id"],
    ["GetAccess", "access", "access_id"],
  ] as const;
  for (const [query, context, key] of views) {
    if (bus.moduleOf(context)) handlers[query] = (b: Record<string, string>) => bus.view(context, b[key]!);
  }
  return handlers;
}
