/**
 * A child process for the heap compactor's test: a large map whose entries are replaced at random (the
 * medium-lived objects that fragment V8's old space), with the compactor reading the old space every
 * 250 ms. Prints one JSON line: the compactor's log lines, and the largest free share of the old space
 * after a major collection once the compactor has stopped.
 */
import { PerformanceObserver, constants } from "node:perf_hooks";
import { pino } from "pino";
import { HeapCompactor, heapCompactorStats, oldSpace } from "../../src/app/heap-compactor.js";

const logs: Array<Record<string, unknown>> = [];
const logger = pino({ level: "debug" }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });

const SIZE = 200_000;
const entry = (i: number) => ({ id: `user-${i}-${Math.random().toString(36)}`, list: [i, i + 1, { x: i }], text: "x".repeat(40) + i });
const map = new Map<number, ReturnType<typeof entry>>();
for (let i = 0; i < SIZE; i++) map.set(i, entry(i));
const recent: unknown[] = [];

async function churn(untilMs: number, stop: () => boolean = () => false): Promise<void> {
  while (Date.now() < untilMs && !stop()) {
    for (let k = 0; k < 5000; k++) {
      const i = Math.floor(Math.random() * SIZE);
      map.set(i, entry(i));
      recent.push(entry(i));
      if (recent.length > 20_000) recent.splice(0, 5000);
    }
    await new Promise((r) => setImmediate(r));
  }
}

const compactor = new HeapCompactor({ everyMs: 250, minFreeBytes: 16 * 2 ** 20, minFreeShare: 0.25, maxMajors: 3, timeoutMs: 20_000, logger });
compactor.start();
await churn(Date.now() + 40_000, () => heapCompactorStats.compactions > 0);
compactor.stop();

let maxFreeShareAfterStop = 0;
const observer = new PerformanceObserver((list) => {
  if (list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) {
    const s = oldSpace();
    maxFreeShareAfterStop = Math.max(maxFreeShareAfterStop, s.free / s.committed);
  }
});
observer.observe({ entryTypes: ["gc"] });
await churn(Date.now() + 8_000, () => maxFreeShareAfterStop >= 0.3);
observer.disconnect();
process.stdout.write(`${JSON.stringify({ stats: heapCompactorStats, armedAfterStop: compactor.armed, maxFreeShareAfterStop, logs, size: map.size })}\n`);
