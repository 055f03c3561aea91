/**
 * `npm run bench:gateway-log`: the heap the gateway's event log holds per buffered event. It encodes
 * learner events as the relay publishes them (msgpack), decodes and validates them as the gateway's
 * feed does, and appends them to an EventLog with a budget of 50,000 events over 10,000 learners
 * (each learner's views included); heap used after a full GC, before and after, ÷ the events kept, and
 * apart from it what is off the heap (ArrayBuffers): the frames' slabs and the log's table of slots.
 * Run with `--expose-gc`.
 */
import { randomUUID } from "node:crypto";
import { EventSchemas, decodeMsgPack, deriveAccessId, encodeMsgPack } from "../contracts/index.js";
import { EventLog } from "../src/gateway/index.js";
import { entryFieldsOf, eventFrame } from "../src/gateway/access-feed.js";
import { uuidv7 } from "../src/runtime/uuid7.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");
const learners = 10_000;
const events = 50_000;
const heap = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
// The frames' slabs and the log's table (typed arrays) are off the heap: counted apart.
const offHeap = () => process.memoryUsage().arrayBuffers;
const log = new EventLog({ minAgeMs: 3_600_000, minEvents: 1, maxEvents: events });
const users = Array.from({ length: learners }, (_, i) => `user-${randomUUID()}-${i}`);
const now = Date.now();
const h0 = heap();
const a0 = offHeap();
for (let seq = 1; seq <= events; seq++) {
  const user_id = users[seq % learners]!;
  const course_id = `course-${(seq * 7) % 20}`;
  const access_id = deriveAccessId(user_id, course_id);
  const granted = seq <= learners;
  const wire = encodeMsgPack({
    event_id: uuidv7(),
    event_type: granted ? "CourseAccessGranted" : "ProgressUpdated",
    event_version: granted ? 2 : 1,
    occurred_on: new Date(now + seq).toISOString(),
    aggregate_type: "AccessRecord",
    aggregate_id: access_id,
    aggregate_version: granted ? 1 : 1 + Math.floor(seq / learners),
    correlation_id: randomUUID().replaceAll("-", ""),
    causation_id: null,
    payload: granted ? { access_id, user_id, course_id, expires_at: null, order_id: randomUUID() } : { access_id, user_id, course_id, progress: seq % 100 },
  });
  const decoded = decodeMsgPack(wire);
  if (!decoded.ok) throw new Error("undecodable");
  const event = EventSchemas[granted ? "CourseAccessGranted" : "ProgressUpdated"].parse(decoded.value);
  log.append(entryFieldsOf(event, seq, now), eventFrame(event, seq), event as never, now);
}
const kept = log.size;
const bytes = heap() - h0;
const frames = offHeap() - a0;
console.log(
  `event log: ${kept.toLocaleString()} events of ${log.learners.toLocaleString()} learners buffered, ${(bytes / 2 ** 20).toFixed(1)} MiB of heap = ${Math.round(bytes / kept)} bytes per buffered event (views included); off the heap (frames, the log's table) ${(frames / 2 ** 20).toFixed(1)} MiB = ${Math.round(frames / kept)} bytes per event`,
);
