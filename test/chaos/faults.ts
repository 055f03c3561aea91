/**
 * The faults of the chaos run, one instance at a time (never all three: the next fault starts once the
 * last one's instance is back), every 8–20 s by a seeded schedule: in `mixed` mode kill -9 (restarted),
 * SIGSTOP for a few seconds then SIGCONT, or SIGTERM (restarted); in `freezekill` mode SIGSTOP, then
 * kill -9 while frozen, then a restart. Given NATS nodes (CHAOS_NATS=r3), a third of the faults kill -9 one
 * of them instead (its store kept) and restart it after 3–10 s: one node down at most, and no instance
 * fault meanwhile.
 */
import type { Instance } from "../support/cluster.js";
import type { Random } from "./settings.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the schedule may do to an instance. */
export const FaultKind = { Kill9: "kill9", Freeze: "freeze", Term: "term", FreezeKill: "freezekill", NatsKill: "natskill" } as const;
export type FaultKind = (typeof FaultKind)[keyof typeof FaultKind];

/** One fault done: when (ms since the epoch), to whom, and how it went. */
export interface Fault {
  at: number;
  kind: FaultKind;
  /** The instance, or the NATS node (natskill), faulted. */
  instance: string;
  /** How long the instance was frozen (freeze, freezekill), ms. */
  frozenMs?: number;
  /** SIGTERM's exit code (0: an orderly shutdown). */
  exitCode?: number | null;
  /** From the fault to the restarted instance's "nerve started" (kill9, term, freezekill), or to the killed node knowing the meta leader again (natskill), ms. */
  downMs?: number;
  /** A restart that failed (the run fails on it). */
  error?: string;
}

/** Options of {@link runFaults}. */
export interface FaultOptions {
  mode: "mixed" | "freezekill";
  rng: Random;
  /** The live instances by id; a restarted instance replaces its entry. */
  instances: Map<string, Instance>;
  /** Starts an instance of `id` again and resolves once it has started. */
  restart(id: string): Promise<Instance>;
  /** Where each fault is said as it happens. */
  say(line: string): void;
  /** The NATS nodes a fault may kill (CHAOS_NATS=r3); none: instance faults only, the choices as before. */
  natsNodes?: readonly NatsNode[];
}

/** A NATS node the faults may kill -9 and restart (test/support/nats-cluster.ts's NatsClusterNode). */
export interface NatsNode {
  readonly name: string;
  kill9(): Promise<void>;
  restart(): Promise<void>;
}

/** Injects faults until `signal` aborts, each pushed onto `done` as it starts; resolves with `done` (a fault in progress ends first). */
export async function runFaults(o: FaultOptions, signal: AbortSignal, done: Fault[] = []): Promise<Fault[]> {
  const wait = (ms: number) => new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
  });
  await wait(o.rng.int(8_000, 20_000));
  while (!signal.aborted) {
    // Drawn only when there are nodes to kill, so a single-server run makes the same choices as before.
    if (o.natsNodes?.length && o.rng.next() < 1 / 3) {
      const node = o.rng.pick(o.natsNodes);
      const downFor = o.rng.int(3_000, 10_000);
      const next = o.rng.int(8_000, 20_000);
      const fault: Fault = { at: Date.now(), kind: FaultKind.NatsKill, instance: node.name };
      done.push(fault);
      try {
        await node.kill9();
        await sleep(downFor);
        await node.restart();
        fault.downMs = Date.now() - fault.at;
      } catch (err) {
        fault.error = String(err);
      }
      o.say(`fault ${done.length}: natskill ${node.name}${fault.downMs ? `, back after ${fault.downMs} ms` : ""}${fault.error ? `, FAILED: ${fault.error.slice(0, 300)}` : ""}`);
      await wait(Math.max(0, fault.at + next - Date.now()));
      continue;
    }
    const id = o.rng.pick([...o.instances.keys()].sort());
    const kind = o.mode === "freezekill" ? FaultKind.FreezeKill : o.rng.pick([FaultKind.Kill9, FaultKind.Freeze, FaultKind.Term]);
    const frozenMs = o.rng.int(2_000, 8_000);
    const next = o.rng.int(8_000, 20_000);
    const fault: Fault = { at: Date.now(), kind, instance: id };
    done.push(fault);
    const victim = o.instances.get(id)!;
    try {
      if (kind === FaultKind.Freeze) {
        victim.proc.pause();
        await sleep(frozenMs);
        victim.proc.resume();
        fault.frozenMs = frozenMs;
      } else {
        if (kind === FaultKind.Kill9) await victim.proc.kill9();
        else if (kind === FaultKind.Term) fault.exitCode = await victim.proc.stop(30_000);
        else {
          victim.proc.pause();
          await sleep(frozenMs);
          fault.frozenMs = frozenMs;
          await victim.proc.kill9();
        }
        o.instances.delete(id);
        o.instances.set(id, await o.restart(id));
        fault.downMs = Date.now() - fault.at;
      }
    } catch (err) {
      fault.error = String(err);
    }
    o.say(`fault ${done.length}: ${kind} ${id}${fault.frozenMs ? `, frozen ${fault.frozenMs} ms` : ""}${fault.exitCode !== undefined ? `, exit ${fault.exitCode}` : ""}${fault.downMs ? `, back after ${fault.downMs} ms` : ""}${fault.error ? `, FAILED: ${fault.error.slice(0, 300)}` : ""}`);
    await wait(Math.max(0, fault.at + next - Date.now()));
  }
  return done;
}
