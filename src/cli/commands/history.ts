/** `history <context> <aggregate_id>`: an aggregate's events, from `query.audit.History`. */
import { Contexts, HISTORY_PAGE, querySubject } from "../../../contracts/index.js";
import type { EnvelopeBase } from "../../../contracts/index.js";
import { serviceRequest, type ServiceReply } from "../admin-client.js";
import { CliError, ExitCodes } from "../cli-error.js";
import type { CliCommand } from "../command.js";
import { eventLine } from "../event-line.js";
import { contextArg, idArg } from "./context-arg.js";

/** One answer of History asked for a page. */
type HistoryPage = { events: EnvelopeBase[]; next_after_version?: number | null };

/** `history <context> <aggregate_id>`. */
export const history: CliCommand = {
  name: "history",
  args: "<context> <aggregate_id>",
  arity: { min: 2, max: 2 },
  summary: "an aggregate's events in order, from query.audit.History",
  help: `context: users, courses, policies, orders or access (the aggregate's owner).
Each line: occurred_on, event type, aggregate type and id, v<aggregate_version>, the payload
(shortened); --json prints the events in full. An aggregate without events prints nothing on
stdout and says so on stderr.

example: npm run nerve -- history orders o-1001`,
  options: { json: { type: "boolean", description: "print the events as one JSON array" } },
  check([ctx, id]) {
    contextArg(ctx!, "history");
    idArg(id!, "history");
  },
  async run({ nc, print, warn }, [ctx, id], values) {
    const context = contextArg(ctx!, "history");
    const aggregate = Contexts[context].aggregate;
    const aggregateId = idArg(id!, "history");
    // A page at a time: a long-lived aggregate's whole history does not fit in one reply.
    const events: EnvelopeBase[] = [];
    for (let after: number | null = 0; after !== null; ) {
      const reply: ServiceReply<{ result: HistoryPage }> = await serviceRequest<{ result: HistoryPage }>(nc, querySubject("audit", "History"), {
        aggregate_type: aggregate,
        aggregate_id: aggregateId,
        after_version: after,
        limit: HISTORY_PAGE.maxLimit,
      });
      if (!reply.ok) throw new CliError(`${reply.error.code}: ${reply.error.message}`);
      events.push(...reply.result.events);
      after = reply.result.next_after_version ?? null;
    }
    if (values.json) print(JSON.stringify(events, null, 2));
    else for (const e of events) print(eventLine(e));
    if (events.length === 0) warn(`no events of ${aggregate} ${id}`);
    return ExitCodes.Ok;
  },
};
