/** How a process manager issues a command: business refusals are answers, transient failures are retried. */
import { createHash } from "node:crypto";
import { isNerveError, type CommandSuccess, type ErrorCode } from "../../contracts/index.js";
import { PoisonEventError } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import type { CommandBus, CommandRequest } from "../runtime/index.js";
import { SpanKind, activeTracer, causeTrace, endSpan, headersOf, startSpan, type Span } from "../tracing/index.js";

// The aggregate said no: retrying the same event would get the same answer, so it counts as handled.
const BUSINESS_ANSWERS: ReadonlySet<ErrorCode> = new Set(["rule_violated", "not_found", "conflict"]);

/** The contract's longest Idempotency-Key. */
export const MAX_IDEMPOTENCY_KEY = 128;

/** A command's idempotency key derived from the event that caused it (hashed when it would exceed 128 chars). */
export function idempotencyKeyOf(eventId: string, ...parts: string[]): string {
  const key = [eventId, ...parts].join(":");
  return key.length <= MAX_IDEMPOTENCY_KEY ? key : `${eventId}:${createHash("sha256").update(key).digest("hex").slice(0, 64)}`;
}

/**
 * Executes a command on behalf of an event. Resolves with the reply, or with null when the aggregate
 * refused it for a business reason (logged); a malformed command is poison; anything else throws so
 * the event is redelivered (`unavailable`, `internal`, a storage failure). The command joins the
 * event's trace: under a span of its own (the consumer's child) when tracing runs, else with the
 * event's trace context as it came.
 */
export async function issueCommand(bus: CommandBus, logger: Logger, req: CommandRequest): Promise<CommandSuccess | null> {
  const tracer = activeTracer();
  const cause = causeTrace();
  let span: Span | undefined;
  if (tracer) {
    span = startSpan(tracer, `issue ${req.type}`, SpanKind.CLIENT, cause, { "nerve.context": req.context, "nerve.aggregate_id": req.aggregateId });
    req = { ...req, ...headersOf(span) };
  } else if (cause) {
    req = { ...req, traceparent: cause.traceparent, tracestate: cause.tracestate };
  }
  try {
    const reply = await bus.dispatch(req);
    endSpan(span);
    return reply;
  } catch (err) {
    endSpan(span, err);
    const where = { command: req.type, aggregate_id: req.aggregateId, correlation_id: req.correlationId, causation_id: req.causationId };
    if (isNerveError(err) && BUSINESS_ANSWERS.has(err.code)) {
      logger.warn({ ...where, code: err.code, reason: err.message }, "command refused; the event is handled");
      return null;
    }
    // A body this process built and the contract refuses is a bug that no redelivery fixes.
    if (isNerveError(err, "invalid_request")) throw new PoisonEventError(`${req.type} ${req.aggregateId} is invalid: ${err.message}`);
    throw err;
  }
}

/** Runs every job, then rethrows the first failure: a partial success is kept, the rest is redelivered. */
export async function allOrFirstError(jobs: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(jobs)).find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}
