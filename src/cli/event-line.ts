/** Events as the CLI shows them: decoded by the contract's codec, upcast, one line each. */
import { EnvelopeBase, decodeMsgPack, upcasters } from "../../contracts/index.js";
import { displaySafe } from "./terminal.js";

/** The outcome of decoding an event message. */
export type DecodedEvent = { ok: true; event: EnvelopeBase } | { ok: false; error: string };

/** Decodes a MessagePack envelope and upgrades an older version, as Nerve's own readers do. */
export function decodeEvent(bytes: Uint8Array): DecodedEvent {
  const d = decodeMsgPack(bytes);
  if (!d.ok) return { ok: false, error: d.error.message };
  return upcastEvent(d.value);
}

/** Checks an envelope (from MessagePack or JSON) and upgrades an older version. */
export function upcastEvent(value: unknown): DecodedEvent {
  const parsed = EnvelopeBase.safeParse(value);
  if (!parsed.success) return { ok: false, error: `not a contract envelope: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}` };
  try {
    return { ok: true, event: upcasters.upcast(parsed.data) };
  } catch (err) {
    return { ok: false, error: String((err as Error).message) };
  }
}

/** Longest payload shown on one line. */
const PAYLOAD_CHARS = 100;

/** `time  subject  EventType  Aggregate id  v<version>  {payload…}` */
export function eventLine(e: EnvelopeBase, subject?: string): string {
  // JSON escapes C0 controls but not C1 or bidirectional ones: those are escaped for the terminal too.
  const payload = displaySafe(JSON.stringify(e.payload));
  const short = payload.length > PAYLOAD_CHARS ? `${payload.slice(0, PAYLOAD_CHARS - 1)}…` : payload;
  return [e.occurred_on, ...(subject ? [subject] : []), e.event_type, `${e.aggregate_type} ${e.aggregate_id}`, `v${e.aggregate_version}`, short].join("  ");
}
