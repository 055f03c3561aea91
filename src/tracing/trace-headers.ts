/** W3C trace context in NATS headers (CONTRACT.md §2, §3): reading it, checking it, writing it. */
import type { MsgHdrs } from "@nats-io/nats-core";
import { parseTraceParent } from "@opentelemetry/core";
import { Headers } from "../../contracts/index.js";

/** Longest `tracestate` carried on: W3C asks for 512 characters at least and lets longer ones be dropped. */
export const MAX_TRACESTATE = 512;

/** A trace context as it travels between hops: the request's, then the events' headers. */
export interface TraceHeaders {
  traceparent: string;
  tracestate?: string | undefined;
}

/**
 * The value when it is a W3C `traceparent`, trimmed; anything else is ignored (W3C: the receiver
 * then starts a new trace) rather than refused, so a tracer's bug never fails a command.
 */
export function validTraceparent(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return parseTraceParent(value) ? value.trim() : undefined;
}

/** The `tracestate` carried beside a valid `traceparent`, when present and not too long. */
export function validTracestate(value: string | undefined): string | undefined {
  return value && value.length <= MAX_TRACESTATE ? value : undefined;
}

/** The trace context a message carries (as written by Nerve's relay), or undefined. */
export function traceHeadersOf(h: MsgHdrs | undefined): TraceHeaders | undefined {
  const traceparent = h?.get(Headers.TraceParent);
  if (!traceparent) return undefined;
  return { traceparent, tracestate: h!.get(Headers.TraceState) || undefined };
}

/** Writes `traceparent` (and `tracestate` when present) on outgoing headers; nothing when there is none. */
export function setTraceHeaders(h: MsgHdrs, traceparent: string | null | undefined, tracestate?: string | null): void {
  if (!traceparent) return;
  h.set(Headers.TraceParent, traceparent);
  if (tracestate) h.set(Headers.TraceState, tracestate);
}
