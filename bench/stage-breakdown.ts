/**
 * Where a load's commands spent their time inside the service, from its own histograms' sums and counts
 * (exact means, unlike the buckets): reply, mailbox, prepare, commit; and what the write path did per
 * command meanwhile (transactions with writes, transactions that only deleted, consumer batches).
 */
import type { Nerve } from "../src/app/nerve.js";
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
  transactionsPerCommand: number;
  deleteOnlyPerCommand: number;
  consumerBatchesPerCommand: number;
  /**
   * Of the replies, commit stages and group-commit transactions, the shares (0–1) that took longer than
   * each of {@link TAIL_MS}: whether an open loop's tail is the service's, and which stage's.
   */
  over: Record<"reply" | "commit" | "transaction", Record<number, number>>;
}

/** The latency bounds (ms, buckets of the service's histograms) the tail shares are read at. */
export const TAIL_MS = [20, 50] as const;

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
  const consumerBatches = [...nerve.consumers.runners.values()].reduce((n, r) => n + r.stats.batches, 0);
  return { sums, counts, within, transactions: nerve.writer.stats.transactions, deleteOnly: nerve.writer.stats.deleteOnlyTransactions, consumerBatches };
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
    transactionsPerCommand: per(after.transactions - before.transactions),
    deleteOnlyPerCommand: per(after.deleteOnly - before.deleteOnly),
    consumerBatchesPerCommand: per(after.consumerBatches - before.consumerBatches),
    over: { reply: over("reply"), commit: over("commit"), transaction: over("transaction") },
  };
}

/** The breakdowns as a table, one row per load. */
export function stagesTable(title: string, rows: [string, StageBreakdown][]): string {
  const ms = (x: number) => x.toFixed(3);
  const pct = (x: number | undefined) => `${((x ?? 0) * 100).toFixed(2)}`;
  const tails = (["reply", "commit", "transaction"] as const).flatMap((k) => TAIL_MS.map((b) => [k, b] as const));
  return table(
    title,
    ["load", "commands", "reply ms", "mailbox ms", "prepare ms", "commit ms", "one transaction ms", "transactions / cmd", "delete-only txns / cmd", "consumer batches / cmd", ...tails.map(([k, b]) => `${k} >${b} ms %`)],
    rows.map(([name, s]) => [name, s.commands, ms(s.replyMs), ms(s.mailboxMs), ms(s.prepareMs), ms(s.commitMs), ms(s.transactionMs), s.transactionsPerCommand.toFixed(2), s.deleteOnlyPerCommand.toFixed(2), s.consumerBatchesPerCommand.toFixed(2), ...tails.map(([k, b]) => pct(s.over[k][b]))]),
  );
}
