/** `send <context> <Command> <id> [json]`: one command, its reply printed. */
import { CONTEXTS, ContentTypes, Headers, commandSubject, commandTypesOf, isCommandOf } from "../../../contracts/index.js";
import { serviceRequest } from "../admin-client.js";
import { ExitCodes, unknownName, usageError } from "../cli-error.js";
import { numberOption, type CliCommand, type OptionValues } from "../command.js";
import { contextArg, idArg } from "./context-arg.js";

/** `send <context> <Command> <id> [json]`. */
export const send: CliCommand = {
  name: "send",
  args: "<context> <Command> <id> [json]",
  arity: { min: 3, max: 4 },
  summary: "send cmd.<context>.<Command>.<id> with a JSON body and print the reply",
  help: `context: ${CONTEXTS.join(", ")}; Command: one of the context's commands (CONTRACT.md §3);
json: the command's body as a JSON object (default {}). The request is sent as JSON, or as
MessagePack with --msgpack; the reply is printed as JSON. An error reply prints its code and
message (and details) on stderr and exits with 1.

examples: npm run nerve -- send users RegisterUser u-1 '{"email":"ada@example.com","name":"Ada"}'
          npm run nerve -- send orders MarkOrderPaid o-1 '{"payment_id":"p-1"}' --idempotency-key pay-o-1`,
  options: {
    "idempotency-key": { type: "string", value: "key", description: "the Idempotency-Key header (≤ 128 chars): a repeat takes effect once" },
    "correlation-id": { type: "string", value: "id", description: "the Correlation-Id header (default: the command id)" },
    msgpack: { type: "boolean", description: "send the body as MessagePack instead of JSON" },
    timeout: { type: "string", value: "seconds", description: "how long to wait for the reply (default 10)" },
  },
  check: (positionals, values) => void sendArgs(positionals, values),
  async run({ nc, print, warn }, positionals, values) {
    const { subject, body, headers, timeoutMs } = sendArgs(positionals, values);
    const reply = await serviceRequest(nc, subject, body, {
      contentType: values.msgpack ? ContentTypes.MsgPack : ContentTypes.Json,
      headers,
      timeoutMs,
    });
    if (!reply.ok) {
      const { code, message, details } = reply.error;
      warn(`${code}: ${message}${details === undefined ? "" : `\ndetails: ${JSON.stringify(details)}`}`);
      return ExitCodes.Failed;
    }
    print(JSON.stringify(reply, null, 2));
    return ExitCodes.Ok;
  },
};

/** The longest reply wait a timer can hold: Node's setTimeout fires at once beyond 2^31 - 1 ms. */
const MAX_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

/** What `send`'s arguments ask for; a bad one is a usage error. */
function sendArgs([ctx, type, id, json]: string[], values: OptionValues) {
  const context = contextArg(ctx!, "send");
  if (!isCommandOf(context, type!)) throw unknownName(`command of ${context}`, type!, commandTypesOf(context), "send");
  const subject = commandSubject(context, type!, idArg(id!, "send"));
  let body: unknown = {};
  if (json !== undefined) {
    try {
      body = JSON.parse(json);
    } catch (err) {
      throw usageError(`the body is not JSON: ${(err as Error).message}`, "send");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw usageError("the body is a JSON object, like '{\"name\":\"Ada\"}'", "send");
  }
  const headers: Record<string, string> = {};
  // As the service takes them: printable, at most 128 characters counted as code points, as the service counts
  // them (128 emoji are 256 UTF-16 units); a line break made nats.js throw, a stack trace and exit 1.
  for (const [flag, header] of [["idempotency-key", Headers.IdempotencyKey], ["correlation-id", Headers.CorrelationId]] as const) {
    const v = values[flag];
    if (typeof v !== "string") continue;
    if (v === "" || [...v].length > 128 || /[\p{Cc}]/u.test(v) || v.trim() !== v) throw usageError(`--${flag} is 1 to 128 printable characters without leading or trailing space, not ${JSON.stringify(v)}`, "send");
    headers[header] = v;
  }
  // nats.js reads a timeout of 0 as its default of one second, and hands the rest to setTimeout, which
  // fires at once past 2^31 - 1 ms: within those, saying so.
  const timeoutS = numberOption("send", values, "timeout", 10);
  if (timeoutS < 0.001 || timeoutS > MAX_TIMEOUT_S) throw usageError(`--timeout must be at least 0.001 and at most ${MAX_TIMEOUT_S} seconds, not ${JSON.stringify(values.timeout)}`, "send");
  return { subject, body, headers, timeoutMs: timeoutS * 1000 };
}
