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
 * The W3C `traceparent` the value carries, written as version 00 (55 characters); anything else is
 * ignored (W3C: the receiver then starts a new trace) rather than refused, so a tracer's bug never
 * fails a command. A later version may append fields of any length, which W3C has a receiver of
 * version 00 read past and drop: carried as it came, a tail of a kilobyte failed the event row's
 * 64-character column on PostgreSQL and made every event of the command too large to publish.
 */
export function validTraceparent(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const span = parseTraceParent(value);
  if (!span) return undefined;
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
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
