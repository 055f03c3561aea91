/** The sizes of a bench run: the full one, or a tiny one for smoke tests (`BENCH_QUICK=1`). */
import type { ClientPlacement } from "./load-client.js";

/** Everything a run's size decides. */
export interface BenchPlan {
  quick: boolean;
  /** Where the load generator runs: on the service's event loop (default) or, with `BENCH_CLIENT=worker`, in a worker thread. */
  client: ClientPlacement;
  /** Hard bound of the whole run; past it the bench cleans up and exits 2. */
  budgetMs: number;
  raw: { messages: number; bytes: number; window: number };
  /** Requests in flight for every command load. */
  inflight: number;
  /** Section 2c: commands sent one at a time, and seconds of the open loop at half of section 2's rate. */
  latency: { lone: number; pacedSeconds: number };
  users: number;
  commands: number;
  /** Commands per phase of the tracing section (off, on, off again). */
  tracingCommands: number;
  scaling: { aggregates: number[]; commands: number; stepMs: number };
  /** Mailbox bound the bench's Nerve runs with: one aggregate must hold every in-flight command. */
  mailboxSize: number;
  activation: { stored: number; cold: number; window: number };
  memory: { actors: number };
}

/** The plan for this process's environment. */
export function benchPlan(env: Record<string, string | undefined> = process.env): BenchPlan {
  const quick = env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true";
  const client: ClientPlacement = env.BENCH_CLIENT === "worker" ? "worker" : "main";
  return quick
    ? {
        quick,
        client,
        budgetMs: 60_000,
        raw: { messages: 2_000, bytes: 200, window: 256 },
        inflight: 256,
        latency: { lone: 100, pacedSeconds: 2 },
        users: 100,
        commands: 1_000,
        tracingCommands: 1_000,
        scaling: { aggregates: [1, 10, 100], commands: 300, stepMs: 5_000 },
        mailboxSize: 4096,
        activation: { stored: 2_000, cold: 500, window: 256 },
        memory: { actors: 2_000 },
      }
    : {
        quick,
        client,
        budgetMs: 210_000,
        raw: { messages: 50_000, bytes: 200, window: 256 },
        inflight: 256,
        latency: { lone: 2_000, pacedSeconds: 10 },
        users: 1_000,
        commands: 30_000,
        tracingCommands: 10_000,
        scaling: { aggregates: [1, 10, 100, 1_000], commands: 10_000, stepMs: 12_000 },
        mailboxSize: 4096,
        activation: { stored: 50_000, cold: 5_000, window: 256 },
        memory: { actors: 50_000 },
      };
}
