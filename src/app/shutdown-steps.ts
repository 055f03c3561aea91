/**
 * The steps of an orderly stop, each bounded by NERVE_SHUTDOWN_MS. Draining (the API, the actors' jobs, the
 * writes, the outbox) may use the bound but a reserve; releasing (the leases, NATS, the files) runs after it
 * even when a drain did not end: one actor job that never ends (a commit waiting for a row lock another
 * session holds) kept its instance renewing every lease while it answered "shutting down", so its
 * partitions served nobody until the process was killed. A step left running is logged, named in the
 * outcome, and its late failure logged; what it was doing stays safe without it (a commit still in flight
 * lands only under the fence it checked; the next owner's acquisition waits for its transaction).
 */
import type { Logger } from "../log/index.js";
import { reportFailure } from "../supervision/index.js";

/**
 * What the releasing steps get past the deadline between them, at most (ms), and each at least: under the
 * 2 s main.ts waits past NERVE_SHUTDOWN_MS before it exits anyway. (Each got 500 ms of its own: seven steps
 * left running reached past that exit, before the files were closed.)
 */
const RELEASE_GRACE_MS = 1000;
const RELEASE_STEP_FLOOR_MS = 100;

export class ShutdownSteps {
  readonly #logger: Logger;
  readonly #shutdownMs: number;
  readonly #now: () => number;
  readonly #deadline: number;
  /** When the draining steps must have ended: the deadline less the releasing steps' reserve. */
  readonly #drainBy: number;
  readonly #failed: string[] = [];
  readonly #overran: string[] = [];
  /** When the releasing steps must have ended, set by the first of them. */
  #releaseBy: number | undefined;

  constructor(logger: Logger, shutdownMs: number, now: () => number = Date.now) {
    this.#logger = logger;
    this.#shutdownMs = shutdownMs;
    this.#now = now;
    this.#deadline = now() + shutdownMs;
    this.#drainBy = this.#deadline - Math.min(2000, shutdownMs / 4);
  }

  /** What is left of the draining steps' time (ms). */
  drainLeft(): number {
    return Math.max(0, this.#drainBy - this.#now());
  }

  /** What is left of the whole bound (ms). */
  left(): number {
    return Math.max(0, this.#deadline - this.#now());
  }

  /** A step that waits for work to end (the API, the actors, the writes, the outbox), bounded by the drain's time. */
  drain(name: string, work: () => unknown): Promise<void> {
    return this.#run(name, work, this.#drainBy);
  }

  /**
   * A step that gives up or closes (the leases, NATS, the files): bounded by the deadline, or — for those
   * that start late — by one grace shared by all of them, with a floor each.
   */
  release(name: string, work: () => unknown): Promise<void> {
    const now = this.#now();
    this.#releaseBy ??= Math.max(this.#deadline, now + RELEASE_GRACE_MS);
    return this.#run(name, work, Math.max(this.#releaseBy, now + RELEASE_STEP_FLOOR_MS));
  }

  /** Whether step `name` was left running. */
  overran(name: string): boolean {
    return this.#overran.includes(name);
  }

  /** Undefined when every step ended well; else an error naming the steps that failed or were left running. */
  outcome(): Error | undefined {
    const parts: string[] = [];
    if (this.#failed.length > 0) parts.push(`these shutdown steps failed: ${[...new Set(this.#failed)].join(", ")} (logged above)`);
    if (this.#overran.length > 0) parts.push(`these did not end within NERVE_SHUTDOWN_MS (${this.#shutdownMs} ms) and were left running: ${[...new Set(this.#overran)].join(", ")}`);
    return parts.length > 0 ? new Error(`nerve stopped, but ${parts.join("; ")}`) : undefined;
  }

  // Each step on its own: one that fails (the database gone during a failover, say) is logged and counted,
  // and the rest still run — the leases released, NATS drained, the files closed.
  async #run(name: string, work: () => unknown, by: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const running = Promise.resolve().then(work);
    try {
      const ended = await Promise.race([running.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, by - this.#now()))))]);
      if (ended) return;
      this.#overran.push(name);
      this.#logger.warn(
        { step: name, shutdown_ms: this.#shutdownMs },
        "shutdown: a step did not end in time; the stop goes on without it (the leases are released: a commit still in flight lands only under the fence it checked)",
      );
      running.catch((err: unknown) => reportFailure(this.#logger, `shutdown: ${name}`, err, "a shutdown step left running failed"));
    } catch (err) {
      this.#failed.push(name);
      reportFailure(this.#logger, `shutdown: ${name}`, err, "a shutdown step failed; the next steps run all the same");
    } finally {
      clearTimeout(timer);
    }
  }
}
