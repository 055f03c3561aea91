/**
 * `npm run bench:event-check`: what checking each event a decider emits costs the command path — the whole
 * envelope's schema (EventSchemas, what it ran until stop 55) against the decided event's check
 * (decidedEventProblem: the type is the context's, the payload the contract's). Envelopes as the runtime
 * builds them (a uuidv7, the clock's timestamp) around each type's sample payload (test/contracts/samples.ts)
 * and the command bench's UserProfileUpdated, 1,024 of each, checked round and round: CPU ns per event (the
 * median of five rounds of 200,000) and heap bytes allocated per event (a collection, then 5,000 checks
 * inside one young generation of 64 MiB: the heap's growth). A few seconds in-process.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Contexts, EVENT_TYPES, EventContexts, EventSchemas, EventVersions, decidedEventProblem, type EventType } from "../contracts/index.js";
import { uuidv7 } from "../src/runtime/uuid7.js";
import { payloadSamples } from "../test/contracts/samples.js";
import { median } from "./percentiles.js";
import { table } from "./table.js";

const N = 200_000;
const ALLOCATING = 5_000;
type Sample = { type: EventType; envelope: Record<string, unknown> & { payload: unknown } };

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

// As the command bus's #envelope builds it.
function envelopeOf(type: EventType, payload: unknown, i: number): Sample {
  const envelope = {
    event_id: uuidv7(),
    event_type: type,
    event_version: EventVersions[type],
    occurred_on: new Date(Date.UTC(2026, 11, 7, 5, 0, 0, i)).toISOString(),
    aggregate_type: Contexts[EventContexts[type]].aggregate,
    aggregate_id: `bench-u${i % 1000}`,
    aggregate_version: i + 1,
    correlation_id: uuidv7(),
    causation_id: uuidv7(),
    payload,
  };
  return { type, envelope };
}

function samplesOf(types: readonly EventType[], payload: (type: EventType, i: number) => unknown): Sample[] {
  return types.flatMap((type) => Array.from({ length: 1024 }, (_, i) => envelopeOf(type, payload(type, i), i)));
}

const whole = (s: Sample) => EventSchemas[s.type].safeParse(s.envelope).success;
const decided = (s: Sample) => decidedEventProblem(EventContexts[s.type], { event_type: s.type, payload: s.envelope.payload }) === undefined;

// CPU ns per check (the median of five rounds of N) and heap bytes per check (the median of five rounds of ALLOCATING).
function measure(samples: Sample[], check: (s: Sample) => boolean): [number, number] {
  const ns: number[] = [];
  const bytes: number[] = [];
  for (let round = 0; round < 5; round++) {
    const t = process.cpuUsage();
    let ok = 0;
    for (let i = 0; i < N; i++) if (check(samples[i % samples.length]!)) ok++;
    const c = process.cpuUsage(t);
    if (ok !== N) throw new Error(`${N - ok} valid envelopes refused`);
    ns.push(((c.user + c.system) * 1000) / N);
    gc();
    const heap0 = process.memoryUsage().heapUsed;
    for (let i = 0; i < ALLOCATING; i++) check(samples[i % samples.length]!);
    bytes.push((process.memoryUsage().heapUsed - heap0) / ALLOCATING);
  }
  return [Math.round(median(ns)), Math.round(median(bytes))];
}

const bench = (type: EventType, i: number) => (type === "UserProfileUpdated" ? { user_id: `bench-u${i % 1000}`, profile_data: { bio: `lone #${i}` } } : payloadSamples[type]);
const rows: (string | number)[][] = [];
for (const [name, types] of [
  ["UserProfileUpdated (the command bench's)", ["UserProfileUpdated"]],
  ["ProgressUpdated", ["ProgressUpdated"]],
  ["OrderPlaced", ["OrderPlaced"]],
  ["every type, in turn", EVENT_TYPES],
] as [string, EventType[]][]) {
  const samples = samplesOf(types, bench);
  const [wholeNs, wholeBytes] = measure(samples, whole);
  const [decidedNs, decidedBytes] = measure(samples, decided);
  rows.push([name, wholeNs, decidedNs, Math.round((decidedNs / wholeNs) * 100) / 100, wholeBytes, decidedBytes]);
}
console.log(
  table(
    "Checking a decided event: CPU ns and heap bytes per event (medians of five rounds)",
    ["events", "whole envelope ns", "decided event ns", "÷", "whole envelope B", "decided event B"],
    rows,
  ),
);
