/**
 * Where a load's commands spent their time inside the service, from its own histograms' sums and counts
 * (exact means, unlike the buckets): reply, mailbox, prepare, commit, and a group commit's parts at the
 * write worker (the hop to its thread, the transaction, the answer's way back); what the write path did
 * per command meanwhile (transactions with writes, transactions that only deleted, consumer batches); and,
 * from the buckets, the shares of each over 5, 20 and 50 ms beside the client's.
 */
import type { Nerve } from "../src/app/nerve.js";
import { TAIL_MS } from "./percentiles.js";
import { table } from "./table.js";

/** Sums (seconds) and counts of the service's histograms, and the writer's counters, at one moment. */
export interface StageReading {
  sums: Record<string, number>;
  counts: Record<string, number>;
  /** Cumulative bucket counts at the {@link TAIL_MS} bounds, by histogram key and bound (ms). */
  within: Record<string, Record<number, number>>;
  transactions: number;
  deleteOnly: number;
  /** Batches applied by the consumer runners so far. */
  consumerBatches: number;
  /** The writer's waits for admission (the relay's backlog, or a projection's lag) so far, and their time (ms). */
  admissionWaits: number;
  admissionWaitMs: number;
}

/** Means per command (ms) between two readings, and the write path's work per command. */
export interface StageBreakdown {
  commands: number;
  replyMs: number;
  mailboxMs: number;
  prepareMs: number;
  /** From the end of prepare to the commit's answer: the group commit's queue, admission and transaction. */
  commitMs: number;
  /** One group-commit transaction with writes, on average. */
  transactionMs: number;
  /**
   * Its parts at the SQLite write worker, on average (0 without the worker): from the main thread's post
   * until the worker's thread started it, the transaction there (statements and fsync), and from its end
   * until the main thread took the answer.
   */
  workerWaitMs: number;
  workerRunMs: number;
  workerAnswerMs: number;
  transactionsPerCommand: number;
  deleteOnlyPerCommand: number;
  consumerBatchesPerCommand: number;
  /** Group commits that waited for admission (the relay's backlog, a projection's lag), per command, and the time they waited per command (ms). */
  admissionWaitsPerCommand: number;
  admissionWaitMsPerCommand: number;
  /**
   * Of the replies, commit stages and group-commit transactions, the shares (0–1) that took longer than
   * each of {@link TAIL_MS}: whether an open loop's tail is the service's, and which stage's.
   */
  over: Record<TailStage, Record<number, number>>;
}

/** The stages whose tail shares are read. */
const TAIL_STAGES = ["reply", "commit", "transaction", "workerWait", "workerRun", "workerAnswer"] as const;
type TailStage = (typeof TAIL_STAGES)[number];

type Values = { values: { labels: Record<string, string | number>; value: number; metricName?: string }[] };

/** Reads the sums and counts now. */
export async function readStages(nerve: Nerve): Promise<StageReading> {
  const registry = nerve.gateway.metrics.registry;
  const sums: Record<string, number> = {};
  const counts: Record<string, number> = {};
  const within: Record<string, Record<number, number>> = {};
  const add = (key: string, v: { metricName?: string; value: number; labels: Record<string, string | number> }) => {
    if (v.metricName?.endsWith("_sum")) sums[key] = (sums[key] ?? 0) + v.value;
    else if (v.metricName?.endsWith("_count")) counts[key] = (counts[key] ?? 0) + v.value;
    else if (v.metricName?.endsWith("_bucket")) {
      const bound = TAIL_MS.find((ms) => Math.abs(Number(v.labels.le) * 1000 - ms) < 1e-6);
      if (bound !== undefined) (within[key] ??= {})[bound] = (within[key]?.[bound] ?? 0) + v.value;
    }
  };
  const read = async (name: string, key: (labels: Record<string, string | number>) => string | undefined) => {
    const metric = registry.getSingleMetric(name);
    if (!metric) throw new Error(`no metric ${name}`);
    for (const v of ((await metric.get()) as Values).values) {
      const k = key(v.labels);
      if (k !== undefined) add(k, v);
    }
  };
  await read("nerve_command_reply_seconds", () => "reply");
  await read("nerve_command_stage_seconds", (l) => String(l.stage));
  await read("nerve_group_commit_seconds", () => "transaction");
  await read("nerve_sqlite_write_seconds", (l) => ({ wait: "workerWait", run: "workerRun", answer: "workerAnswer" })[String(l.phase)]);
  const consumerBatches = [...nerve.consumers.runners.values()].reduce((n, r) => n + r.stats.batches, 0);
  const w = nerve.writer.stats;
  return { sums, counts, within, transactions: w.transactions, deleteOnly: w.deleteOnlyTransactions, consumerBatches, admissionWaits: w.admissionWaits, admissionWaitMs: w.admissionWaitMs };
}

/** The breakdown between `before` and `after`. */
export function stageBreakdown(before: StageReading, after: StageReading): StageBreakdown {
  const n = (k: string) => (after.counts[k] ?? 0) - (before.counts[k] ?? 0);
  const meanMs = (k: string) => (n(k) > 0 ? (((after.sums[k] ?? 0) - (before.sums[k] ?? 0)) / n(k)) * 1000 : 0);
  const commands = n("reply");
  const per = (x: number) => (commands > 0 ? x / commands : 0);
  const over = (k: string) => Object.fromEntries(TAIL_MS.map((ms) => [ms, n(k) > 0 ? 1 - ((after.within[k]?.[ms] ?? 0) - (before.within[k]?.[ms] ?? 0)) / n(k) : 0]));
  return {
    commands,
    replyMs: meanMs("reply"),
    mailboxMs: meanMs("mailbox"),
    prepareMs: meanMs("prepare"),
    commitMs: meanMs("commit"),
    transactionMs: meanMs("transaction"),
    workerWaitMs: meanMs("workerWait"),
    workerRunMs: meanMs("workerRun"),
    workerAnswerMs: meanMs("workerAnswer"),
    transactionsPerCommand: per(after.transactions - before.transactions),
    deleteOnlyPerCommand: per(after.deleteOnly - before.deleteOnly),
    consumerBatchesPerCommand: per(after.consumerBatches - before.consumerBatches),
    admissionWaitsPerCommand: per(after.admissionWaits - before.admissionWaits),
    admissionWaitMsPerCommand: per(after.admissionWaitMs - before.admissionWaitMs),
    over: Object.fromEntries(TAIL_STAGES.map((k) => [k, over(k)])) as StageBreakdown["over"],
  };
}

/** The breakdowns as a table, one row per load. */
export function stagesTable(title: string, rows: [string, StageBreakdown][]): string {
  const ms = (x: number) => x.toFixed(3);
  return table(
    title,
    ["load", "commands", "reply ms", "mailbox ms", "prepare ms", "commit ms", "one transaction ms", "at the worker: wait ms", "run ms", "answer ms", "transactions / cmd", "delete-only txns / cmd", "consumer batches / cmd", "admission waits / cmd", "admission ms / cmd"],
    rows.map(([name, s]) => [name, s.commands, ms(s.replyMs), ms(s.mailboxMs), ms(s.prepareMs), ms(s.commitMs), ms(s.transactionMs), ms(s.workerWaitMs), ms(s.workerRunMs), ms(s.workerAnswerMs), s.transactionsPerCommand.toFixed(2), s.deleteOnlyPerCommand.toFixed(2), s.consumerBatchesPerCommand.toFixed(2), s.admissionWaitsPerCommand.toFixed(4), s.admissionWaitMsPerCommand.toFixed(3)]),
  );
}

/**
 * The tails, one row per load and bound: the share of commands the client saw over it, and inside the
 * service the shares of replies, commit stages, transactions and their parts at the worker (per
 * transaction) over it. What the client sees and no stage does happened outside the reply's span: on the
 * way in (NATS, and the main thread busy before it reads the request), or on the way back.
 */
export function tailsTable(title: string, rows: [string, Record<number, number>, StageBreakdown][]): string {
  const pct = (x: number | undefined) => `${((x ?? 0) * 100).toFixed(2)}`;
  return table(
    title,
    ["load", "over ms", "client %", "reply %", "commit %", "transaction %", "worker wait %", "worker run %", "worker answer %"],
    rows.flatMap(([name, client, s]) => TAIL_MS.map((b) => [name, b, pct(client[b]), ...TAIL_STAGES.map((k) => pct(s.over[k][b]))])),
  );
}
