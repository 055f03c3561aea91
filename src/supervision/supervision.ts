/**
 * Background work that nothing awaits — a consumer's loop, a poll, a status watcher — must never end the
 * process when it fails: its failure is logged, counted and the task restarted by its owner. This is
 * the one place that counts such failures (`nerve_background_failures_total`) and the process's last
 * line of defence against a promise that was left without a handler.
 */
import type { Logger } from "../log/index.js";

/** Failures of background tasks since start, by task name; read by /metrics. */
export const backgroundFailures = new Map<string, number>();

/** Counts one failure of a background task (`nerve_background_failures_total`). */
function countFailure(task: string): void {
  backgroundFailures.set(task, (backgroundFailures.get(task) ?? 0) + 1);
}

/** Counts and logs one failure of a background task. */
export function reportFailure(logger: Logger, task: string, err: unknown, message = "background task failed"): void {
  countFailure(task);
  logger.error({ task, err }, message);
}

/** Attaches the handler a background promise needs: a rejection is logged and counted, never unhandled. */
export function watch(logger: Logger, task: string, work: Promise<unknown>): void {
  work.catch((err: unknown) => reportFailure(logger, task, err));
}

/** Options of {@link supervise}. */
export interface SuperviseOptions {
  /** First delay before a restart (ms); doubled per consecutive failure. */
  minBackoffMs?: number;
  /** Longest delay before a restart (ms). */
  maxBackoffMs?: number;
  /** A run that lasted this long resets the back-off (ms). */
  healthyAfterMs?: number;
}

/** A supervised task: `stop` ends it and waits for the run in progress. */
export interface Supervised {
  /** Restarts after a failure or an unexpected end, since start. */
  readonly restarts: number;
  stop(): Promise<void>;
}

/**
 * Runs `run` until `stop`: when it throws, or returns while not stopped, the failure is logged and
 * counted and it runs again after a growing back-off. `run` gets the signal that `stop` aborts.
 */
export function supervise(logger: Logger, task: string, run: (signal: AbortSignal) => Promise<void>, opts: SuperviseOptions = {}): Supervised {
  const min = opts.minBackoffMs ?? 200;
  const max = opts.maxBackoffMs ?? 15_000;
  const healthy = opts.healthyAfterMs ?? 30_000;
  const ctl = new AbortController();
  let restarts = 0;
  const loop = async () => {
    let delay = min;
    while (!ctl.signal.aborted) {
      const started = Date.now();
      try {
        await run(ctl.signal);
        if (ctl.signal.aborted) return;
        reportFailure(logger, task, new Error("ended unexpectedly"), "background task ended; restarting");
      } catch (err) {
        if (ctl.signal.aborted) return;
        reportFailure(logger, task, err, "background task failed; restarting");
      }
      if (Date.now() - started >= healthy) delay = min;
      restarts++;
      await sleep(delay, ctl.signal);
      delay = Math.min(max, delay * 2);
    }
  };
  const done = loop();
  return {
    get restarts() {
      return restarts;
    },
    async stop() {
      ctl.abort();
      await done;
    },
  };
}

/** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * The process's last resort: a rejection no code handled is a bug, logged and counted under the task
 * `unhandled` — the process goes on, since the task it belonged to has its own supervisor. An uncaught
 * exception leaves the process in an unknown state: it is logged and the process exits (systemd, or any
 * supervisor of processes, starts it again). Returns a function that removes both handlers.
 */
export function installProcessGuards(logger: Logger, exit: (code: number) => void = (c) => process.exit(c)): () => void {
  const onRejection = (reason: unknown) => reportFailure(logger, "unhandled", reason, "unhandled promise rejection (a bug): logged, counted, the process goes on");
  const onException = (err: Error) => {
    logger.fatal({ err }, "uncaught exception: exiting");
    exit(1);
  };
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtException", onException);
  return () => {
    process.off("unhandledRejection", onRejection);
    process.off("uncaughtException", onException);
  };
}

/**
 * A gate for a log line that a lasting failure would repeat with every request or tick: true at the
 * first call and then at most once per `everyMs` (a minute by default); the caller counts the rest and
 * says how many so far when it does speak.
 */
export function sayingAtMostEvery(everyMs = 60_000): () => boolean {
  let saidAt = -Infinity;
  return () => {
    const now = performance.now();
    if (now - saidAt < everyMs) return false;
    saidAt = now;
    return true;
  };
}

/**
 * The log of a failure that every try repeats while it lasts — the database away fails every lease round,
 * relay pass and timer poll, several a second between them. Each failure is counted
 * (`nerve_background_failures_total`, under `task`); an error of a kind (its name and code) is said at most
 * once per `everyMs` (a minute by default), with how many failures went unsaid since the line before: a
 * different error (a bug beside the outage) is said at once. A spell none of whose failures was said (a
 * blip just said) is said once it has lasted `spellMs` (5 s): a flapping dependency stays bounded, a real
 * outage after it is not silent. The first success after a spell that was said says how long it lasted and
 * how many tries failed. Before, each try wrote its own error line (123 lines in a 20 s cut of PostgreSQL).
 */
export class FailureSpell {
  #startedAt: number | undefined;
  /** When each kind of error was last said. */
  readonly #saidAt = new Map<string, number>();
  #spellSaid = false;
  #failures = 0;
  #unsaid = 0;

  constructor(
    private readonly logger: Logger,
    private readonly task: string,
    private readonly message: string,
    private readonly everyMs = 60_000,
    private readonly now: () => number = () => performance.now(),
    private readonly spellMs = 5_000,
  ) {}

  /** One try failed: counted, and said unless an error of its kind was said less than `everyMs` ago. */
  failed(err: unknown): void {
    countFailure(this.task);
    const now = this.now();
    this.#startedAt ??= now;
    this.#failures++;
    const kind = kindOf(err);
    const fresh = now - (this.#saidAt.get(kind) ?? -Infinity) >= this.everyMs;
    const overdue = !this.#spellSaid && now - this.#startedAt >= this.spellMs;
    if (!fresh && !overdue) {
      this.#unsaid++;
      return;
    }
    this.#saidAt.set(kind, now);
    this.#spellSaid = true;
    const repeats = this.#failures > 1 || this.#unsaid > 0 ? { failures_in_a_row: this.#failures, unsaid_since_last_line: this.#unsaid } : {};
    this.#unsaid = 0;
    this.logger.error({ task: this.task, err, ...repeats }, this.#failures > 1 ? `${this.message} (still failing)` : this.message);
  }

  /** A try succeeded: ends a spell (said when the spell was). */
  succeeded(): void {
    if (this.#startedAt === undefined) return;
    if (this.#spellSaid) this.logger.info({ task: this.task, failures: this.#failures, lasted_ms: Math.round(this.now() - this.#startedAt) }, `${this.task}: working again`);
    this.#startedAt = undefined;
    this.#spellSaid = false;
    this.#failures = 0;
  }
}

/** An error's kind for {@link FailureSpell}: its name and code (`Error:ECONNREFUSED`), not its message (ports, ids). */
function kindOf(err: unknown): string {
  if (!(err instanceof Error)) return typeof err;
  const code = (err as { code?: unknown }).code;
  return `${err.name}:${typeof code === "string" || typeof code === "number" ? code : ""}`;
}
