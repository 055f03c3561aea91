/**
 * The headers of one event's publish (CONTRACT.md §2): Content-Type, Event-Type, Event-Version, the
 * causing command's trace context when it had one, and Nats-Msg-Id (JetStream's de-duplication) — in
 * that order, the order in which they went out when nats-core built them (the JetStream client adds
 * Nats-Msg-Id last from its `msgID` option). Written as one block (src/nats/wire-headers.ts); a value
 * nats-core would refuse or change takes nats-core's own way, errors and all.
 */
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import { ContentTypes, Headers } from "../../contracts/index.js";
import type { OutboxRow } from "../persistence/index.js";
import { setTraceHeaders } from "../tracing/index.js";
import { WireHeaders, plainHeaderValue } from "../nats/wire-headers.js";

/** The row's fields a publish carries as headers. */
export type HeaderFields = Pick<OutboxRow, "event_type" | "event_version" | "event_id" | "traceparent" | "tracestate">;

/** The headers of a row's publish. */
export function eventHeaders(row: HeaderFields): MsgHdrs {
  const pairs: [string, string][] = [
    [Headers.ContentType, ContentTypes.MsgPack],
    [Headers.EventType, row.event_type],
    [Headers.EventVersion, String(row.event_version)],
  ];
  if (row.traceparent) {
    pairs.push([Headers.TraceParent, row.traceparent]);
    if (row.tracestate) pairs.push([Headers.TraceState, row.tracestate]);
  }
  pairs.push([Headers.MsgId, row.event_id]);
  return pairs.every(([, v]) => plainHeaderValue(v)) ? new WireHeaders(pairs) : viaNatsCore(row);
}

/** Exactly what the relay built before: nats-core's headers, Nats-Msg-Id last. */
export function viaNatsCore(row: HeaderFields): MsgHdrs {
  const h = natsHeaders();
  h.set(Headers.ContentType, ContentTypes.MsgPack);
  h.set(Headers.EventType, row.event_type);
  h.set(Headers.EventVersion, String(row.event_version));
  setTraceHeaders(h, row.traceparent, row.tracestate);
  h.set(Headers.MsgId, row.event_id);
  return h;
}
