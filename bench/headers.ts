/**
 * `npm run bench:headers`: what the headers of Nerve's two publishes per command cost on the main thread —
 * the event's (Content-Type, Event-Type, Event-Version, Nats-Msg-Id) and the reply's (Content-Type,
 * Nerve-Instance) — built and encoded by nats-core's `headers()` as publish would, against the blocks of
 * src/nats/wire-headers.ts; and the protocol line (`HPUB <subject> <reply> <sizes>`) every publish writes,
 * through nats-core's TextEncoder against Buffer.from (patches/@nats-io+nats-core+3.4.0.patch). A few
 * seconds in-process; prints CPU ns per message.
 */
import { okHeaders, replyHeaders } from "../src/api/wire.js";
import { eventHeaders, viaNatsCore } from "../src/outbox/event-headers.js";
import { uuidv7 } from "../src/runtime/uuid7.js";
import { ContentTypes } from "../contracts/index.js";
import { table } from "./table.js";

const N = 500_000;
const rows = Array.from({ length: 1024 }, () => ({ event_type: "UserProfileUpdated", event_version: 1, event_id: uuidv7(), traceparent: null, tracestate: null }));
const encode = (h: unknown) => (h as { encode(): Uint8Array }).encode().length;

// CPU ns per call of `make` + encode: the median of five rounds.
function measure(make: (i: number) => unknown): [number] {
  const ns: number[] = [];
  for (let round = 0; round < 5; round++) {
    const t = process.cpuUsage();
    let sink = 0;
    for (let i = 0; i < N; i++) sink += encode(make(i));
    const c = process.cpuUsage(t);
    if (sink === 0) throw new Error("nothing encoded");
    ns.push(((c.user + c.system) * 1000) / N);
  }
  return [Math.round(ns.sort((x, y) => x - y)[2]!)];
}

const out = [
  ["event: nats-core headers()", ...measure((i) => viaNatsCore(rows[i & 1023]!))],
  ["event: eventHeaders (one block)", ...measure((i) => eventHeaders(rows[i & 1023]!))],
  ["reply: nats-core headers()", ...measure(() => replyHeaders(ContentTypes.MsgPack, "nerve-1"))],
  ["reply: okHeaders (block kept)", ...measure(() => okHeaders(ContentTypes.MsgPack, "nerve-1"))],
];
const TE = new TextEncoder();
const lines = rows.map((r, i) => `HPUB events.users.UserProfileUpdated.bench-u${i} _INBOX.QC199waLLIBG4XUvpyUOAE.${r.event_id.slice(0, 8)} 148 860\r\n`);
const proto = [
  ["protocol line: TextEncoder (nats-core)", ...measure((i) => ({ encode: () => TE.encode(lines[i & 1023]!) }))],
  ["protocol line: Buffer.from (patched)", ...measure((i) => ({ encode: () => Buffer.from(lines[i & 1023]!, "utf8") }))],
];
console.log(table(`Headers of one publish, built and encoded (${N.toLocaleString("en-US")} per round, median of 5)`, ["headers", "CPU ns"], out));
console.log(table(`The protocol line of one publish, encoded (${N.toLocaleString("en-US")} per round, median of 5)`, ["encoder", "CPU ns"], proto));
