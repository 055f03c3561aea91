/** The consumer commands on the service's admin endpoints: replay, lag, dead-letters, retry-dead-letter. */
import { SingleBar, Presets } from "cli-progress";
import { AdminSubjects, ConsumerOps, instanceAdminSubject } from "../../api/admin-subjects.js";
import type { ReplayState } from "../../api/consumer-admin.js";
import type { ConsumerLag } from "../../consumers/index.js";
import { DEAD_LETTER_PAGE, type DeadLetterPage } from "../../consumers/dead-letter-page.js";
import { adminRequest, isNoResponders, isTimedOut } from "../admin-client.js";
import { CliError, ExitCodes, usageError } from "../cli-error.js";
import { numberOption, type CliCommand, type OptionValues } from "../command.js";

const json = { type: "boolean", description: "print JSON" } as const;

/** `replay <consumer>` with a progress bar. */
export const replay: CliCommand = {
  name: "replay",
  args: "<consumer>",
  arity: { min: 1, max: 1 },
  summary: "rebuild a consumer's read model from the start of its streams, with a progress bar",
  help: `Empties the consumer's read model, recreates its durable consumers and reads its streams again
while the service runs; a process manager keeps its inbox, so no command is issued twice.
An unknown consumer is refused with the list of known ones. With several instances it runs on the
one that runs the consumer, whichever instance takes the request; the last line names it.
Ctrl-C stops the watching only (exit 130): the replay goes on in the service.

example: npm run nerve -- replay catalog`,
  options: {},
  endsOnInterrupt: true,
  async run({ nc, print, warn, interrupted }, [consumer]) {
    const started = await adminRequest<Partial<ReplayState>>(nc, AdminSubjects.Replay, { consumer });
    let stopWatching = false;
    void interrupted.then(() => (stopWatching = true));
    // The instance running the replay answers its progress; a service that names none, through its queue group.
    const statusSubject = typeof started.instance === "string" ? instanceAdminSubject(started.instance, ConsumerOps.ReplayStatus) : AdminSubjects.ReplayStatus;
    let quietSince: number | undefined;
    const bar = new SingleBar({ format: `replay ${consumer} [{bar}] {percentage}% | {value}/{total} events | {duration}s`, stream: process.stderr }, Presets.shades_classic);
    bar.start(1, 0);
    try {
      for (;;) {
        if (stopWatching) {
          bar.stop();
          // Only the watching stops: a half-rebuilt read model would be worse than a finished one.
          warn(`stopped watching; the replay of ${consumer} goes on in the service${typeof started.instance === "string" ? ` (instance ${started.instance})` : ""}: \`npm run nerve -- lag\` shows it catch up`);
          return ExitCodes.Interrupted;
        }
        let s: Partial<ReplayState>;
        try {
          s = await adminRequest<Partial<ReplayState>>(nc, statusSubject, { consumer });
          quietSince = undefined;
        } catch (err) {
          // A poll without an answer (NATS away for a moment, the instance busy) is asked again, for a minute.
          if (isTimedOut(err) && performance.now() - (quietSince ??= performance.now()) < 60_000) continue;
          // The instance running it left (stopped, or crashed): the consumer's next holder reads on from where it
          // stopped. Was: "no Nerve service answers …: start it with npm start first".
          if (isNoResponders(err) && statusSubject !== AdminSubjects.ReplayStatus) {
            bar.stop();
            throw new CliError(`instance ${started.instance} left during the replay of ${consumer}: the consumer's next holder reads on from where it stopped (its progress cannot be followed from here); \`npm run nerve -- lag\` shows it catch up`);
          }
          throw err;
        }
        bar.setTotal(Math.max(1, s.total ?? 0));
        bar.update(s.done ?? 0);
        if (!s.running) {
          bar.stop();
          print(replayOutcome(consumer!, s));
          return ExitCodes.Ok;
        }
        await Promise.race([new Promise((r) => setTimeout(r, 200)), interrupted]);
      }
    } finally {
      bar.stop();
    }
  },
};

/**
 * The last line of a replay from the status that says it is no longer running — or a {@link CliError}
 * saying plainly what came back when that is a failure, a replay stopped short, or nothing at all (no
 * instance named, 0 of 0 events: a status from an instance that never ran it, not a success).
 */
export function replayOutcome(consumer: string, s: Partial<ReplayState>): string {
  const done = s.done ?? 0;
  const total = s.total ?? 0;
  const where = typeof s.instance === "string" ? ` on instance ${s.instance}` : "";
  if (s.error) throw new CliError(`replay of ${consumer} failed${where}: ${s.error}`);
  if (done !== total) throw new CliError(`replay of ${consumer} stopped${where} at ${done} of ${total} events without an error: run it again`);
  if (!where && total === 0) throw new CliError(`replay of ${consumer}: the service's status says no replay is running and none did anything (0 of 0 events, no instance named) — it may have reached an instance that does not run ${consumer}; see \`npm run nerve -- status\``);
  return `replayed ${done} of ${total} events into ${consumer}${where}`;
}

/** `lag`: pending and ack-pending of every consumer. */
export const lag: CliCommand = {
  name: "lag",
  args: "",
  arity: { min: 0, max: 0 },
  summary: "pending and ack-pending of every consumer, per stream",
  help: `pending: events not yet delivered to the consumer; ack-pending: delivered, not yet acknowledged.
Both read from JetStream by the service. \`status\` shows the same with dead letters and thresholds.`,
  options: { json },
  async run({ nc, print }, _args, values) {
    const rows = await adminRequest<ConsumerLag[]>(nc, AdminSubjects.Lag);
    if (values.json) print(JSON.stringify(rows));
    else {
      const width = Math.max(8, ...rows.map((r) => r.consumer.length));
      print(`${"consumer".padEnd(width)}  ${"stream".padEnd(15)}  ${"pending".padStart(8)}  ${"ack-pending".padStart(11)}`);
      for (const r of rows) print(`${r.consumer.padEnd(width)}  ${r.stream.padEnd(15)}  ${String(r.pending).padStart(8)}  ${String(r.ackPending).padStart(11)}`);
    }
    return ExitCodes.Ok;
  },
};

/** `dead-letters [consumer]` as JSON, fetched a page at a time. */
export const deadLetters: CliCommand = {
  name: "dead-letters",
  args: "[consumer]",
  arity: { min: 0, max: 1 },
  summary: "list dead letters (JSON), of every consumer or one",
  help: `Events a consumer gave up on after its retries, oldest first: id, consumer, stream, stream_seq,
event, reason, attempts. \`retry-dead-letter <id>\` runs one through its consumer again.
The service answers a page at a time (at most ${DEAD_LETTER_PAGE.maxLimit} letters, ${DEAD_LETTER_PAGE.maxBytes / 1024} KiB); this reads them all
and prints one JSON array, or the first --limit.

example: npm run nerve -- dead-letters audit --limit 20`,
  options: {
    limit: { type: "string", value: "n", description: "print at most the n oldest (default: all)" },
    after: { type: "string", value: "id", description: "start after this dead letter's id (default: the first)" },
  },
  check: (_args, values) => void deadLetterRange(values),
  async run({ nc, print }, [consumer], values) {
    const { limit, after: first } = deadLetterRange(values);
    let after: number | null = first;
    const letters: unknown[] = [];
    while (after !== null && letters.length < limit) {
      const page: DeadLetterPage = await adminRequest(nc, AdminSubjects.DeadLetters, {
        ...(consumer === undefined ? {} : { consumer }),
        after,
        limit: Math.min(DEAD_LETTER_PAGE.maxLimit, limit - letters.length),
      });
      letters.push(...page.items);
      after = page.next;
    }
    print(JSON.stringify(letters, null, 2));
    return ExitCodes.Ok;
  },
};

/** `dead-letters`' --limit and --after; bad ones are a usage error. */
function deadLetterRange(values: OptionValues): { limit: number; after: number } {
  const limit = numberOption("dead-letters", values, "limit", Infinity);
  const after = numberOption("dead-letters", values, "after", 0);
  if (!Number.isInteger(after) || (Number.isFinite(limit) && (!Number.isInteger(limit) || limit < 1))) throw usageError("--limit and --after are whole numbers, --limit at least 1", "dead-letters");
  return { limit, after };
}

/** A dead letter's id argument; anything but a positive integer is a usage error. */
function letterId(id: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(id)) throw usageError(`a dead letter's id is a positive integer (see dead-letters), not ${JSON.stringify(id)}`, "retry-dead-letter");
  return Number(id);
}

/** `retry-dead-letter <id>`. */
export const retryDeadLetter: CliCommand = {
  name: "retry-dead-letter",
  args: "<id>",
  arity: { min: 1, max: 1 },
  summary: "run a dead letter through its consumer again; on success it leaves the store",
  help: `Prints the outcome (handled, duplicate or skipped), and the letter leaves the store. A letter that
holds no valid event stays, and the command fails. So does one the consumer's read model can no longer
take (stale: its row is absent, or moved past the event by later events in a way it cannot undo): the
retry applies nothing, and a replay of the consumer restores the event.`,
  options: {},
  check: ([id]) => void letterId(id!),
  async run({ nc, print, warn }, [id]) {
    const reply = await adminRequest<{ outcome?: unknown; message?: unknown }>(nc, AdminSubjects.RetryDeadLetter, { id: letterId(id!) });
    print(JSON.stringify(reply));
    if (reply.outcome !== "stale") return ExitCodes.Ok;
    warn(typeof reply.message === "string" ? reply.message : `dead letter ${id} stays: its consumer's read model can no longer take its event; replay the consumer`);
    return ExitCodes.Failed;
  },
};
