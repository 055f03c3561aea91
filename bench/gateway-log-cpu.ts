/**
 * Second half of `npm run bench:gateway-log`: the CPU the gateway's feed spends per access event without
 * NATS or sockets — decode and validate (as the feed does), then with the event log: the repeat check,
 * the frame, the append at the default budget of 250,000 events (learners' views, retention, eviction).
 * 10,000 learners; five passes of 100,000 ProgressUpdated events each, encoded beforehand (out of the
 * timing); the mean of passes 2–5 (the first fills the log and warms the code). Process CPU, all
 * threads (the collector's helpers included). Run with `--expose-gc`.
 */
import { cpuUsage } from "node:process";
import { EventSchemas, decodeMsgPack } from "../contracts/index.js";
import { entryFieldsOf, eventFrame } from "../src/gateway/access-feed.js";
import { EventLog } from "../src/gateway/index.js";
import { Learners, floodBatch } from "./gateway-load.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");
const PASS = 100_000;
const PASSES = 5;

/** µs of CPU per event of each pass; with `log`, every event is appended to it. */
function run(log: EventLog | undefined): number[] {
  const learners = new Learners(10_000);
  const passes = Array.from({ length: PASSES }, () => floodBatch(learners, PASS).map((m) => m.data));
  gc!();
  let seq = 0;
  let bytes = 0;
  const out: number[] = [];
  for (const pass of passes) {
    const started = cpuUsage();
    for (const data of pass) {
      seq++;
      const decoded = decodeMsgPack(data);
      if (!decoded.ok) throw new Error("undecodable");
      const parsed = EventSchemas.ProgressUpdated.safeParse(decoded.value);
      if (!parsed.success) throw new Error(parsed.error.message);
      const event = parsed.data;
      if (!log || log.isRepeat(event.payload.user_id, event.aggregate_id, event.aggregate_version)) continue;
      // The hub reads each entry's frame once per socket: once here.
      bytes += log.append(entryFieldsOf(event, seq, Date.now()), eventFrame(event, seq), event as never).frame.length;
    }
    const spent = cpuUsage(started);
    out.push((spent.user + spent.system) / PASS);
  }
  if (log && bytes === 0) throw new Error("no frame read");
  return out;
}

const steady = (xs: number[]) => xs.slice(1).reduce((a, b) => a + b, 0) / (xs.length - 1);
const decodeOnly = run(undefined);
const logged = run(new EventLog({ minAgeMs: 24 * 3600_000, minEvents: 1000, maxEvents: 250_000 }));
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(" / ");
console.log(`feed CPU per access event, no NATS (passes of ${PASS.toLocaleString()}; mean of passes 2–${PASSES}):`);
console.log(`  decode + validate                    ${steady(decodeOnly).toFixed(2)} µs  (${fmt(decodeOnly)})`);
console.log(`  decode + validate + log (250,000)    ${steady(logged).toFixed(2)} µs  (${fmt(logged)})`);
console.log(`  the log's share                      ${(steady(logged) - steady(decodeOnly)).toFixed(2)} µs`);
