/**
 * The latency histograms of /metrics: reply time by command and query, group-commit duration and
 * batch size, relay publish-to-ack, consumer handle time. Observed on the hot path, so each label
 * combination's series is looked up once and kept: an observation is map lookups and one `observe`
 * of a {@link LeanHistogram} (prom-client's own `observe` cost ~20 times as much).
 */
import type { Registry } from "prom-client";
import { LeanHistogram, type HistogramSeries } from "./lean-histogram.js";
import type { CommandStages } from "../runtime/index.js";

/** Latency buckets (seconds): half a millisecond to five seconds. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];

/** Buckets of writes per group-commit transaction (the writer's largest batch is 512). */
export const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** Series by context, then name, then result. */
type Children = Map<string, Map<string, Map<string, HistogramSeries>>>;

function cached(children: Children, h: LeanHistogram, context: string, name: string, result: string): HistogramSeries {
  let byName = children.get(context);
  if (!byName) children.set(context, (byName = new Map()));
  let byResult = byName.get(name);
  if (!byResult) byName.set(name, (byResult = new Map()));
  let child = byResult.get(result);
  if (!child) byResult.set(result, (child = h.labels(context, name, result)));
  return child;
}

/** `nerve_<kind>_reply_seconds`, by context, command or query, and result. */
function replyHistogram(kind: "command" | "query"): LeanHistogram {
  return new LeanHistogram({
    name: `nerve_${kind}_reply_seconds`,
    help: `${kind === "command" ? "Commands" : "Queries"} from request receipt to reply sent, by context, ${kind} and result (ok or the contract's error code)`,
    labelNames: ["context", kind, "result"],
    buckets: LATENCY_BUCKETS,
  });
}

/** One Nerve's latency histograms; made unregistered, {@link register}ed on the /metrics registry. */
export class LatencyMetrics {
  readonly commandReply = replyHistogram("command");
  readonly queryReply = replyHistogram("query");
  readonly groupCommit = new LeanHistogram({ name: "nerve_group_commit_seconds", help: "Duration of one group-commit transaction with writes", buckets: LATENCY_BUCKETS });
  readonly groupCommitBatch = new LeanHistogram({ name: "nerve_group_commit_batch_size", help: "Aggregate writes per group-commit transaction", buckets: BATCH_SIZE_BUCKETS });
  readonly publishAck = new LeanHistogram({ name: "nerve_relay_publish_ack_seconds", help: "Outbox relay: from an event's publish to JetStream's ack", buckets: LATENCY_BUCKETS });
  readonly consumerHandle = new LeanHistogram({
    name: "nerve_consumer_handle_seconds",
    help: "A durable consumer's handling of one event, its read-model transaction included (events of one batch share its time)",
    labelNames: ["consumer"],
    buckets: LATENCY_BUCKETS,
  });
  readonly commandStage = new LeanHistogram({
    name: "nerve_command_stage_seconds",
    help: "Where a command's time goes: mailbox (waiting for its actor, its activation included), prepare (idempotency lookup, facts, decide, envelopes), commit (the group commit's queue, admission and transaction)",
    labelNames: ["stage"],
    buckets: LATENCY_BUCKETS,
  });
  readonly sqliteWrite = new LeanHistogram({
    name: "nerve_sqlite_write_seconds",
    help: "A group commit with writes through the SQLite write worker, in three phases: wait (from the main thread's post until the worker's thread starts it: the hop to that thread, and a transaction still running before it), run (its statements and fsync), answer (from its end until the main thread takes the answer)",
    labelNames: ["phase"],
    buckets: LATENCY_BUCKETS,
  });
  readonly #workerWait = this.sqliteWrite.labels("wait");
  readonly #workerRun = this.sqliteWrite.labels("run");
  readonly #workerAnswer = this.sqliteWrite.labels("answer");
  readonly #mailbox = this.commandStage.labels("mailbox");
  readonly #prepare = this.commandStage.labels("prepare");
  readonly #commit = this.commandStage.labels("commit");
  readonly #commands: Children = new Map();
  readonly #queries: Children = new Map();

  /** Observes a command's reply latency. */
  readonly command = (context: string, command: string, result: string, seconds: number): void => cached(this.#commands, this.commandReply, context, command, result).observe(seconds);

  /** Observes a query's reply latency. */
  readonly query = (context: string, query: string, result: string, seconds: number): void => cached(this.#queries, this.queryReply, context, query, result).observe(seconds);

  /** Observes a command's stages. */
  readonly stages = (s: CommandStages): void => {
    this.#mailbox.observe(s.mailbox);
    this.#prepare.observe(s.prepare);
    if (s.commit !== undefined) this.#commit.observe(s.commit);
  };

  /** Observes one group-commit transaction. */
  readonly transaction = (seconds: number, writes: number): void => {
    this.groupCommit.observe(seconds);
    this.groupCommitBatch.observe(writes);
  };

  /** Observes the phases of one group commit through the SQLite write worker. */
  readonly worker = (wait: number, run: number, answer: number): void => {
    this.#workerWait.observe(wait);
    this.#workerRun.observe(run);
    this.#workerAnswer.observe(answer);
  };

  /** Observes one event's publish-to-ack time. */
  readonly acked = (seconds: number): void => this.publishAck.observe(seconds);

  /** The observer of one consumer's handle times. */
  readonly handled = (consumer: string): ((seconds: number) => void) => {
    const child = this.consumerHandle.labels(consumer);
    return (seconds) => child.observe(seconds);
  };

  /** Adds every histogram to `registry`. */
  register(registry: Registry): void {
    for (const h of [this.commandReply, this.queryReply, this.commandStage, this.groupCommit, this.groupCommitBatch, this.sqliteWrite, this.publishAck, this.consumerHandle]) h.register(registry);
  }
}
