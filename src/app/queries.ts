/** Query handlers answered from the write side: aggregate views (from actor state) and audit history. */
import { HISTORY_PAGE, errors, upcasters, type EnvelopeBase, type QueryBody, type QueryType } from "../../contracts/index.js";
import type { EventRow } from "../persistence/index.js";
import type { QueryHandler } from "../api/index.js";
import type { CommandBus } from "../runtime/index.js";
import { withinBytes } from "../support/byte-budget.js";

/** An event row as the contract's envelope; the event log keeps every event as written, so older versions are upcast here, as every reader does. */
function envelopeOf(r: EventRow): EnvelopeBase {
  return upcasters.upcast({
    event_id: r.event_id,
    event_type: r.event_type,
    event_version: Number(r.event_version),
    occurred_on: r.occurred_on,
    aggregate_type: r.aggregate_type as EnvelopeBase["aggregate_type"],
    aggregate_id: r.aggregate_id,
    aggregate_version: Number(r.aggregate_version),
    correlation_id: r.correlation_id,
    causation_id: r.causation_id,
    payload: JSON.parse(r.payload),
  });
}

/** Aggregate reads: they see every command already answered, because they read the actor's state; History upcasts old versions. */
export function aggregateQueries(bus: CommandBus): Partial<Record<QueryType, QueryHandler>> {
  const handlers: Partial<Record<QueryType, QueryHandler>> = {
    History: async (b: QueryBody<"History">) => {
      const paged = b.after_version !== undefined || b.limit !== undefined;
      if (!paged) {
        // The whole history, as the contract asks — bounded, so that one request cannot fill the heap.
        const rows = await bus.repo.history(b.aggregate_type, b.aggregate_id, { limit: HISTORY_PAGE.maxUnpaged + 1 });
        if (rows.length > HISTORY_PAGE.maxUnpaged) {
          throw errors.invalidRequest(`the history of ${b.aggregate_type} ${b.aggregate_id} holds more than ${HISTORY_PAGE.maxUnpaged} events: ask for it in pages (after_version, limit; each answer's next_after_version is where the next begins)`, { max_events: HISTORY_PAGE.maxUnpaged });
        }
        return { events: rows.map(envelopeOf) };
      }
      const limit = b.limit ?? HISTORY_PAGE.defaultLimit;
      const rows = await bus.repo.history(b.aggregate_type, b.aggregate_id, { after: b.after_version ?? 0, limit: limit + 1 });
      const events = withinBytes(rows.slice(0, limit).map(envelopeOf), HISTORY_PAGE.maxBytes);
      return { events, next_after_version: events.length < rows.length ? events.at(-1)!.aggregate_version : null };
    },
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
