/**
 * bench:pairs' one-at-a-time phase of one subject in a process of its own (`BENCH_PAIRS_LONE_METHOD=process`):
 * the subject's service — a Nerve over the bench's SQLite file, or a floor's new store — runs here, on this
 * process's main thread and nothing else; its client is the bench's, in the parent process (each load's spec
 * comes over IPC, its result goes back), as a user's client and service are two processes. What runs here is
 * the same code as the `fresh` method's (bench/pairs-lone.ts), so the two methods differ only in the process.
 *
 * Started by `loneInChild` (below, for bench/pairs.ts) with the task in BENCH_PAIRS_LONE_TASK; answers with
 * `{ done: LoneResult }` or `{ failed: string }` and exits.
 */
import { fork } from "node:child_process";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { killOnExit, terminate } from "../test/support/children.js";
import { Cleanup } from "./cleanup.js";
import type { CommandLoadResult, LoadSpec } from "./command-load.js";
import type { DurableFloorKind } from "./floor.js";
import type { LoadClient } from "./load-client.js";
import { floorLone, nerveLone, type LoneResult, type LoneSizes } from "./pairs-lone.js";

/** What the child measures. */
export type LoneTask = LoneSizes & { natsUrl: string; ids: string[]; inherited: Record<string, string> } & ({ subject: "nerve"; dbPath: string; engine?: string | undefined } | { subject: "floor"; durable: DurableFloorKind | undefined });

/** Messages from the child, and to it. */
type FromChild = { run: number; spec: LoadSpec } | { done: LoneResult } | { failed: string };
type ToChild = { run: number; result?: CommandLoadResult; error?: string };

const TASK_VARIABLE = "BENCH_PAIRS_LONE_TASK";

/**
 * Runs `task` in a child process (the bench's own node flags, e.g. its semi-space size), serving each of its
 * loads with `load`, here; kills the child if it has not answered within `timeoutMs`.
 */
export async function loneInChild(task: LoneTask, load: LoadClient, timeoutMs = 180_000): Promise<LoneResult> {
  // The bench's node flags, with tsx registered (a test's process, under vitest, has it in no flag).
  const execArgv = process.execArgv.some((a) => a.includes("tsx")) ? process.execArgv : [...process.execArgv, "--import", "tsx"];
  const child = fork(new URL("./pairs-lone-child.ts", import.meta.url), [], { execArgv, env: { ...process.env, [TASK_VARIABLE]: JSON.stringify(task) }, serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
  killOnExit(child);
  try {
    return await new Promise<LoneResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the one-at-a-time child (${task.subject}) did not answer in ${timeoutMs} ms`)), timeoutMs);
      child.on("message", (m: FromChild) => {
        if ("run" in m) {
          load.run(m.spec).then(
            (result) => child.send({ run: m.run, result } satisfies ToChild),
            (err: unknown) => child.send({ run: m.run, error: String((err as Error)?.message ?? err) } satisfies ToChild),
          );
          return;
        }
        clearTimeout(timer);
        if ("done" in m) resolve(m.done);
        else reject(new Error(`the one-at-a-time child (${task.subject}) failed: ${m.failed}`));
      });
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the one-at-a-time child (${task.subject}) exited with ${code ?? signal} before it answered`));
      });
    });
  } finally {
    await terminate(child, 10_000);
  }
}

/** The parent's load client, seen from the child: each run's spec sent to the parent, its result awaited. */
function parentLoad(): LoadClient {
  const pending = new Map<number, { resolve: (r: CommandLoadResult) => void; reject: (e: Error) => void }>();
  let next = 0;
  process.on("message", (m: ToChild) => {
    const p = pending.get(m.run);
    pending.delete(m.run);
    if (m.result) p?.resolve(m.result);
    else p?.reject(new Error(m.error ?? "the parent's load failed"));
  });
  return {
    placement: "main",
    run: (spec) =>
      new Promise((resolve, reject) => {
        const run = next++;
        pending.set(run, { resolve, reject });
        process.send!({ run, spec } satisfies FromChild);
      }),
    close: async () => undefined,
  };
}

/** Whether the child has sent its answer (after it, the channel's close is the child's own doing). */
let answered = false;

async function child(task: LoneTask): Promise<void> {
  const cleanup = new Cleanup();
  const answer = (m: FromChild) => {
    answered = true;
    return new Promise<void>((resolve) => process.send!(m, () => resolve()));
  };
  try {
    const load = parentLoad();
    let result: LoneResult;
    if (task.subject === "nerve") {
      const client: NatsConnection = await connect({ servers: task.natsUrl, name: "bench-lone-child", noAsyncTraces: true });
      cleanup.add("client", () => client.close());
      result = await nerveLone({ cleanup, inherited: task.inherited, natsUrl: task.natsUrl, dbPath: task.dbPath, client, load, ids: task.ids, engine: task.engine, lone: task.lone, warmUp: task.warmUp });
    } else {
      result = await floorLone({ natsUrl: task.natsUrl, load, ids: task.ids, durable: task.durable, lone: task.lone, warmUp: task.warmUp });
    }
    await cleanup.run();
    await answer({ done: result });
  } catch (err) {
    await cleanup.run();
    await answer({ failed: String((err as Error)?.stack ?? err) });
  }
  process.disconnect();
}

const raw = process.env[TASK_VARIABLE];
if (raw && process.send) {
  // The bench gone (its IPC channel closed) before this answered: nothing to answer to.
  process.once("disconnect", () => {
    if (!answered) process.exit(1);
  });
  child(JSON.parse(raw) as LoneTask).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
