/**
 * Commands sent over NATS to whichever instance owns the aggregate: how a process manager (a durable
 * consumer that issues commands) reaches an aggregate whose partition another instance holds. The
 * request goes to `cmd.<context>.<Type>.<id>` like any client's, so routing (mapping or forwarding)
 * takes it to the owner; the reply comes back as the same success, or as the NerveError it carried.
 */
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";
import { CommandSuccess, ContentTypes, ErrorBody, Headers, NerveError, commandSubject, decodeMsgPack, encodeMsgPack, errors } from "../../contracts/index.js";
import { z } from "zod";
import type { CommandRequest } from "../runtime/index.js";
import { WireHeaders, writableHeaderValue } from "../nats/wire-headers.js";

const Failure = z.object({ ok: z.literal(false), error: ErrorBody });

/** How long a remote command may take before it counts as unavailable (the event is then redelivered). */
export const REMOTE_COMMAND_TIMEOUT_MS = 5000;

/** Sends `req` through NATS; resolves with its success reply, rejects with its NerveError (unavailable when nobody answers). */
export function remoteCommands(nc: NatsConnection, timeoutMs = REMOTE_COMMAND_TIMEOUT_MS): (req: CommandRequest) => Promise<CommandSuccess> {
  return async (req) => {
    const pairs: [string, string][] = [[Headers.ContentType, ContentTypes.MsgPack]];
    if (req.idempotencyKey) pairs.push([Headers.IdempotencyKey, req.idempotencyKey]);
    if (req.correlationId) pairs.push([Headers.CorrelationId, req.correlationId]);
    if (req.causationId) pairs.push([Headers.CausationId, req.causationId]);
    if (req.traceparent) {
      pairs.push([Headers.TraceParent, req.traceparent]);
      if (req.tracestate) pairs.push([Headers.TraceState, req.tracestate]);
    }
    // Written as they are: nats-core's headers trim any Unicode white space from a value, and the owner reads
    // what a client sent, trimmed of spaces and tabs only — a correlation id ending in a no-break space was
    // another id once the command went to another instance (cross-context flows audit). A value with a line
    // break cannot be written so (the API refuses one from a client); nats-core refuses it too.
    const h = pairs.every(([, v]) => writableHeaderValue(v)) ? new WireHeaders(pairs) : natsCoreHeaders(pairs);
    let data: Uint8Array;
    try {
      data = (await nc.request(commandSubject(req.context, req.type, req.aggregateId), encodeMsgPack(req.body), { timeout: timeoutMs, headers: h })).data;
    } catch (err) {
      throw errors.unavailable(`${req.type} ${req.aggregateId}: its owner did not answer (${(err as Error).message}); retry`);
    }
    const decoded = decodeMsgPack(data);
    if (decoded.ok) {
      const ok = CommandSuccess.safeParse(decoded.value);
      if (ok.success) return ok.data;
      const failed = Failure.safeParse(decoded.value);
      if (failed.success) throw new NerveError(failed.data.error.code, failed.data.error.message, failed.data.error.details ? { details: failed.data.error.details } : undefined);
    }
    throw errors.internal(`${req.type} ${req.aggregateId}: the reply is not the contract's`);
  };
}

function natsCoreHeaders(pairs: readonly (readonly [string, string])[]): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of pairs) h.set(k, v);
  return h;
}
