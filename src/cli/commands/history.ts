/** `history <context> <aggregate_id>`: an aggregate's events, from `query.audit.History`. */
import { Contexts, querySubject } from "../../../contracts/index.js";
import type { EnvelopeBase } from "../../../contracts/index.js";
import { serviceRequest } from "../admin-client.js";
import { CliError, ExitCodes } from "../cli-error.js";
import type { CliCommand } from "../command.js";
import { eventLine } from "../event-line.js";
import { contextArg, idArg } from "./context-arg.js";

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
  async run({ nc, print, warn }, [ctx, id], values) {
    const context = contextArg(ctx!, "history");
    const aggregate = Contexts[context].aggregate;
    const reply = await serviceRequest<{ result: { events: EnvelopeBase[] } }>(nc, querySubject("audit", "History"), { aggregate_type: aggregate, aggregate_id: idArg(id!, "history") });
    if (!reply.ok) throw new CliError(`${reply.error.code}: ${reply.error.message}`);
    const events = reply.result.events;
    if (values.json) print(JSON.stringify(events, null, 2));
    else for (const e of events) print(eventLine(e));
    if (events.length === 0) warn(`no events of ${aggregate} ${id}`);
    return ExitCodes.Ok;
  },
};
