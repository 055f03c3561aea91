/**
 * `npm run bench:wake`: what a thread's sleep costs the code that runs after it, on this machine. The same
 * small piece of a command's work (five event envelopes through zod, Nerve's MessagePack codec and JSON) is timed back to
 * back, after 1 ms of spinning, after 20 system calls, and after 0.1, 1 and 10 ms asleep (`Atomics.wait`:
 * a futex, the thread off its core). On a VM whose idle cores are handed to others, caches and TLBs
 * come back cold: the same code runs several times slower after a sleep. At a low rate every step of a
 * command (the request's read, the write worker's transaction, its answer) starts from such a sleep.
 * A few seconds, in-process; medians of each way, two rounds.
 */
import { fstatSync } from "node:fs";
import { decodeMsgPack, encodeMsgPack, EventSchemas } from "../contracts/index.js";
import { summarize } from "./percentiles.js";

const schema = EventSchemas.UserProfileUpdated;
const id = (n: number) => `0193a1b2-c3d4-7e5f-8a9b-${n.toString(16).padStart(12, "0")}`;
const envelope = (i: number) => ({
  event_id: id(1_000_000 + i),
  event_type: "UserProfileUpdated",
  event_version: 1,
  occurred_on: new Date().toISOString(),
  aggregate_type: "User",
  aggregate_id: id(i % 1000),
  aggregate_version: i + 1,
  correlation_id: id(1),
  causation_id: id(2),
  payload: { user_id: id(i % 1000), profile_data: { bio: `durable #${i}` } },
});
let sink = 0;
// Five envelopes: validated, packed, unpacked and their payloads stringified.
const work = (i: number): void => {
  for (let k = 0; k < 5; k++) {
    const e = envelope(i * 5 + k);
    if (!schema.safeParse(e).success) throw new Error("the envelope is not valid");
    const b = encodeMsgPack(e);
    const back = decodeMsgPack(b);
    if (!back.ok) throw back.error;
    sink += JSON.stringify((back.value as { payload: unknown }).payload).length + b.length;
  }
};
const flag = new Int32Array(new SharedArrayBuffer(4));
const spin = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
const timed = (n: number, before: () => void): number => {
  const us: number[] = [];
  for (let i = 0; i < n; i++) {
    before();
    const t = performance.now();
    work(i);
    us.push((performance.now() - t) * 1000);
  }
  return summarize(us).p50;
};

for (let i = 0; i < 20_000; i++) work(i);
const ways: [string, number, () => void][] = [
  ["back to back", 2000, () => undefined],
  ["after 1 ms spinning", 1000, () => spin(1)],
  ["after 1 ms spinning and 20 fstat calls", 1000, () => {
    spin(1);
    for (let k = 0; k < 20; k++) fstatSync(1);
  }],
  ["after 0.1 ms asleep", 1000, () => void Atomics.wait(flag, 0, 0, 0.1)],
  ["after 1 ms asleep", 1000, () => void Atomics.wait(flag, 0, 0, 1)],
  ["after 10 ms asleep", 200, () => void Atomics.wait(flag, 0, 0, 10)],
];
const rows = [1, 2].map(() => ways.map(([, n, before]) => timed(n, before)));
console.log("Five envelopes (zod, msgpack, JSON), median µs:");
for (const [k, [name]] of ways.entries()) console.log(`  ${name.padEnd(40)} ${rows.map((r) => r[k]!.toFixed(1).padStart(7)).join(" ")}`);
if (sink < 0) console.log(sink);
