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

/**
 * The block's first lines by event type and version (`NATS/1.0`, Content-Type, Event-Type, Event-Version),
 * written once: the block of every publish was built as a string of a dozen pieces and encoded, ~2 KB of
 * garbage per event (~0.4 KB now). Bounded: rows read back from the table may name any type.
 */
const prefixes = new Map<string, Map<number, Buffer>>();
let prefixCount = 0;
const MAX_PREFIXES = 256;

function prefixOf(type: string, version: number): Buffer | undefined {
  const cached = prefixes.get(type)?.get(version);
  if (cached) return cached;
  const v = String(version);
  if (!plainHeaderValue(type) || !plainHeaderValue(v)) return undefined;
  const prefix = Buffer.from(`NATS/1.0\r\n${Headers.ContentType}: ${ContentTypes.MsgPack}\r\n${Headers.EventType}: ${type}\r\n${Headers.EventVersion}: ${v}`, "utf8");
  if (prefixCount < MAX_PREFIXES) {
    let byVersion = prefixes.get(type);
    if (!byVersion) prefixes.set(type, (byVersion = new Map()));
    byVersion.set(version, prefix);
    prefixCount++;
  }
  return prefix;
}

const TRACEPARENT_LINE = `\r\n${Headers.TraceParent}: `;
const TRACESTATE_LINE = `\r\n${Headers.TraceState}: `;
const MSG_ID_LINE = `\r\n${Headers.MsgId}: `;
const END = "\r\n\r\n";

/** The headers of a row's publish. */
export function eventHeaders(row: HeaderFields): MsgHdrs {
  const prefix = prefixOf(row.event_type, row.event_version);
  const traceparent = row.traceparent || undefined;
  const tracestate = traceparent ? row.tracestate || undefined : undefined;
  if (!prefix || !plainHeaderValue(row.event_id) || (traceparent !== undefined && !plainHeaderValue(traceparent)) || (tracestate !== undefined && !plainHeaderValue(tracestate))) return viaNatsCore(row);
  // The same bytes as headerBlock(pairsOf(row)), written into one buffer.
  let size = prefix.length + Buffer.byteLength(row.event_id, "utf8") + MSG_ID_LINE.length + END.length;
  if (traceparent !== undefined) size += TRACEPARENT_LINE.length + Buffer.byteLength(traceparent, "utf8");
  if (tracestate !== undefined) size += TRACESTATE_LINE.length + Buffer.byteLength(tracestate, "utf8");
  const block = Buffer.allocUnsafe(size);
  let at = prefix.copy(block, 0);
  if (traceparent !== undefined) {
    at += block.write(TRACEPARENT_LINE, at, "latin1");
    at += block.write(traceparent, at, "utf8");
  }
  if (tracestate !== undefined) {
    at += block.write(TRACESTATE_LINE, at, "latin1");
    at += block.write(tracestate, at, "utf8");
  }
  at += block.write(MSG_ID_LINE, at, "latin1");
  at += block.write(row.event_id, at, "utf8");
  block.write(END, at, "latin1");
  return new WireHeaders(() => pairsOf(row), block);
}

/** The row's headers as names and values, in wire order. */
function pairsOf(row: HeaderFields): [string, string][] {
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
  return pairs;
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
