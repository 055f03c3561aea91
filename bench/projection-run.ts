/** Drives one real projection through ConsumerManager and times it: from the first event, and by replay. */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { ConsumerManager, type EventHandler, type ReplayProgress, type RunnerStats, type Subscriber } from "../src/consumers/index.js";
import type { Logger } from "../src/log/index.js";
import type { ConsumerBatchWriter, Database } from "../src/persistence/index.js";
import { waitDrained } from "./raw-consume.js";

/** One timed projection run. */
export interface ProjectionRun {
  events: number;
  seconds: number;
  perSecond: number;
  /** Transactions the runner committed (calls of EventHandler.applyBatch). */
  transactions: number;
  /** Events per transaction. */
  averageBatch: number;
  handled: number;
  duplicates: number;
  skipped: number;
  deadLettered: number;
  retries: number;
}

/** A projection under test: its manager (only this subscriber) and batch counters. */
export class ProjectionUnderTest {
  readonly manager: ConsumerManager;
  readonly #batches = { transactions: 0, events: 0 };

  constructor(
    readonly subscriber: Subscriber,
    private readonly deps: { db: Database; js: JetStreamClient; jsm: JetStreamManager; logger: Logger; stream: string; batchWriter?: ConsumerBatchWriter },
  ) {
    this.manager = new ConsumerManager({ ...deps, subscribers: [subscriber], lagLogMs: 0 });
    // Observes the runner's transactions without changing them: every batch goes through applyBatch.
    const handler = this.manager.handlers.get(subscriber.name) as EventHandler;
    const apply = handler.applyBatch.bind(handler);
    handler.applyBatch = (events, ...rest) => {
      this.#batches.transactions++;
      this.#batches.events += events.length;
      return apply(events, ...rest);
    };
  }

  get #stats(): RunnerStats {
    return this.manager.runners.get(this.subscriber.name)!.stats;
  }

  /** Starts the manager on a fresh durable and times it until `total` events are handled and acked. */
  async fromStart(total: number, deadline: number): Promise<ProjectionRun> {
    return this.#timed(total, async () => {
      await this.manager.start();
      for (;;) {
        const s = this.#stats;
        if (s.handled + s.duplicates + s.skipped + s.deadLettered >= total) break;
        if (Date.now() >= deadline) throw new Error(`${this.subscriber.name} handled ${s.handled} of ${total} events before its deadline`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await waitDrained(this.deps.jsm, this.deps.stream, this.subscriber.name, deadline);
    });
  }

  /** Times `manager.replay` (which polls lag every 100 ms, so its figure may include up to that much idle time). */
  async replay(total: number, deadline: number, onProgress: (p: ReplayProgress) => void): Promise<ProjectionRun & { reported: ReplayProgress }> {
    let reported: ReplayProgress | undefined;
    const run = await this.#timed(total, async () => {
      // replay() reports every 100 ms; a throw from its callback ends it.
      reported = await this.manager.replay(this.subscriber.name, (p) => {
        if (Date.now() >= deadline) throw new Error(`replay of ${this.subscriber.name} did not finish before its deadline (${p.done} of ${p.total})`);
        onProgress(p);
      });
    });
    return { ...run, reported: reported! };
  }

  /** Stops the runner. */
  stop(): Promise<void> {
    return this.manager.stop();
  }

  async #timed(total: number, body: () => Promise<void>): Promise<ProjectionRun> {
    const before = { ...this.#stats };
    this.#batches.transactions = 0;
    this.#batches.events = 0;
    const started = performance.now();
    await body();
    const seconds = (performance.now() - started) / 1000;
    const s = this.#stats;
    const delta = (k: keyof RunnerStats) => s[k] - before[k];
    const { transactions, events } = this.#batches;
    return {
      events: total,
      seconds,
      perSecond: total / seconds,
      transactions,
      averageBatch: transactions === 0 ? 0 : events / transactions,
      handled: delta("handled"),
      duplicates: delta("duplicates"),
      skipped: delta("skipped"),
      deadLettered: delta("deadLettered"),
      retries: delta("retries"),
    };
  }
}
