/** Query handlers answered from the write side: aggregate views (from actor state) and audit history. */
import { upcasters, type QueryType } from "../../contracts/index.js";
import type { QueryHandler } from "../api/index.js";
import type { CommandBus } from "../runtime/index.js";

/** Aggregate reads: they see every command already answered, because they read the actor's state; History upcasts old versions. */
export function aggregateQueries(bus: CommandBus): Partial<Record<QueryType, QueryHandler>> {
  const handlers: Partial<Record<QueryType, QueryHandler>> = {
    History: async (b: { aggregate_type: string; aggregate_id: string }) => ({
      events: (await bus.repo.history(b.aggregate_type, b.aggregate_id)).map((r) =>
        // The event log keeps every event as written: older versions are upcast here, as every reader does.
        upcasters.upcast({
          event_id: r.event_id,
          event_type: r.event_type,
          event_version: Number(r.event_version),
          occurred_on: r.occurred_on,
          aggregate_type: r.aggregate_type,
          aggregate_id: r.aggregate_id,
          aggregate_version: Number(r.aggregate_version),
          correlation_id: r.correlation_id,
          causation_id: r.causation_id,
          payload: JSON.parse(r.payload),
        }),
      ),
    }),
  };
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
