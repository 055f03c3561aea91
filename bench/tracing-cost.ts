/**
 * Section 2b: what tracing costs the command path. The same UpdateUserProfile load runs on the running
 * Nerve with tracing off, on (OTLP/HTTP to a sink in a process of its own that discards the spans),
 * and off again; the off figure is the mean of the two, so a drift of the shared machine between
 * phases cancels out. A warm-up load runs, unmeasured, before the first phase and before the traced one. Tracing is the process's, so turning it on reaches the running service.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Nerve } from "../src/app/index.js";
import { NERVE_VERSION } from "../src/app/index.js";
import { startTracing } from "../src/tracing/index.js";
import type { LoadClient } from "./load-client.js";
import { profileLoad, waitConfirmed, type DurablePhase } from "./durable-commands.js";
import { startOtlpSink } from "./otlp-sink.js";
import { table } from "./table.js";

/** Options of {@link benchTracing}. */
export interface TracingCostOptions {
  ids: string[];
  count: number;
  inflight: number;
  /** Bound of each phase (ms). */
  phaseMs: number;
  serverPid?: number;
}

/** The three phases and what the sink received during the traced one. */
export interface TracingCost {
  off: DurablePhase[];
  on: DurablePhase;
  spansPerCommand: number;
  exportRequests: number;
}

/** Runs off, on, off; throws when a phase is cut short by its bound. */
export async function benchTracing(nerve: Nerve, client: NatsConnection, load: LoadClient, o: TracingCostOptions): Promise<TracingCost> {
  const phase = async (label: string) => {
    const p = await profileLoad(nerve, client, load, { label, ids: o.ids, count: o.count, inflight: o.inflight, deadline: Date.now() + o.phaseMs, serverPid: o.serverPid });
    if (p.load.cutShort) throw new Error(`the ${label} load hit its deadline after ${p.load.sent} commands`);
    await waitConfirmed(nerve, client, p.expectedMessages, Date.now() + 30_000);
    return p;
  };
  // Each mode's code warms up unmeasured first: the first phase after a start ran slower whichever it was.
  await phase("warm-up");
  const before = await phase("tracing-off");
  const sink = await startOtlpSink();
  // A queue that holds a few seconds of spans at full load: the SDK's default (2,048) drops most of them.
  process.env.OTEL_BSP_MAX_QUEUE_SIZE ??= "100000";
  process.env.OTEL_BSP_SCHEDULE_DELAY ??= "1000";
  const tracing = await startTracing({ endpoint: sink.url, instanceId: "bench", version: NERVE_VERSION });
  if (!tracing) throw new Error("tracing did not start");
  let on: DurablePhase;
  let received: { requests: number; spans: number };
  try {
    // The span code's first thousands of runs are slow (cold code, the exporter's first connection): not measured.
    await phase("tracing-warm-up");
    await tracing.flush();
    const start = await sink.count();
    on = await phase("tracing-on");
    // A shutdown over many queued batches may hit the exporter's concurrency limit: the count says what arrived.
    await tracing.shutdown().catch((err) => console.log(`note: flushing the last spans failed: ${(err as Error).message}`));
    const end = await sink.count();
    received = { requests: end.requests - start.requests, spans: end.spans - start.spans };
  } finally {
    await tracing.shutdown().catch(() => undefined);
    await sink.close();
  }
  const after = await phase("tracing-off-again");
  return { off: [before, after], on, spansPerCommand: received.spans / on.load.sent, exportRequests: received.requests };
}

/** The section's table: each phase, then tracing on against the mean of the two off phases. */
export function tracingTable(c: TracingCost): string {
  const us = (ms: number | undefined) => (ms === undefined ? NaN : Math.round(ms * 1000));
  const row = (label: string, p: DurablePhase) => [label, Math.round(p.load.perSecond), p.load.latency.p99, us(p.eventLoop.processCpuMsPerCommand), us(p.eventLoop.mainThreadCpuMsPerCommand), us(p.serverCpuMsPerCommand)];
  const mean = (f: (p: DurablePhase) => number | undefined) => (f(c.off[0]!)! + f(c.off[1]!)!) / 2;
  const offCpu = mean((p) => p.eventLoop.processCpuMsPerCommand);
  const ratio = (on: number, off: number) => `× ${(on / off).toFixed(2)}`;
  return table(
    `2b. Tracing: the same UpdateUserProfile load with tracing off, on (OTLP/HTTP JSON to a discarding sink; ${c.spansPerCommand.toFixed(1)} spans per command in ${c.exportRequests} exports), off again`,
    ["phase", "commands/s", "p99 ms", "process CPU µs/cmd", "main thread µs/cmd", "nats-server µs/cmd"],
    [
      row("off", c.off[0]!),
      row("on", c.on),
      row("off again", c.off[1]!),
      ["on ÷ mean of off", ratio(c.on.load.perSecond, mean((p) => p.load.perSecond)), "", ratio(c.on.eventLoop.processCpuMsPerCommand, offCpu), "", ""],
      ["on − mean of off (µs/cmd)", "", "", us(c.on.eventLoop.processCpuMsPerCommand - offCpu), "", ""],
    ],
  );
}
