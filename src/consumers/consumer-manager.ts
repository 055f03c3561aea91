/** Starts every subscriber's runner, reports lag, and rebuilds a read model by replay while the service runs. */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "../log/index.js";
import type { Database } from "../persistence/index.js";
import { DeadLetters } from "./dead-letters.js";
import { EventHandler, txOf } from "./event-handler.js";
import { ConsumerRunner, DEFAULT_RETRY, type RetryPolicy } from "./runner.js";
import type { Subscriber } from "./subscriber.js";

/** Progress of a replay. */
export interface ReplayProgress {
  consumer: string;
  done: number;
  total: number;
}

/** Lag of one consumer on one stream. */
export interface ConsumerLag {
  consumer: string;
  stream: string;
  pending: number;
  ackPending: number;
}

/** Options of the consumer manager. */
export interface ConsumerManagerOptions {
  db: Database;
  js: JetStreamClient;
  jsm: JetStreamManager;
  logger: Logger;
  subscribers: Subscriber[];
  retry?: RetryPolicy;
  /** How often lag is logged (0: never). */
  lagLogMs?: number;
}

/** Every subscribing context of this process. */
export class ConsumerManager {
  readonly deadLetters: DeadLetters;
  readonly handlers = new Map<string, EventHandler>();
  readonly runners = new Map<string, ConsumerRunner>();
  readonly #o: ConsumerManagerOptions;
  #lagTimer: NodeJS.Timeout | undefined;

  constructor(opts: ConsumerManagerOptions) {
    this.#o = opts;
    this.deadLetters = new DeadLetters(opts.db);
    for (const s of opts.subscribers) {
      const h = new EventHandler(opts.db, s);
      this.handlers.set(s.name, h);
      this.runners.set(s.name, new ConsumerRunner(opts.js, opts.jsm, h, this.deadLetters, opts.logger.child({ consumer: s.name }), opts.retry ?? DEFAULT_RETRY));
    }
  }

  /** Runs each subscriber's extra DDL, then starts every runner. */
  async start(): Promise<void> {
    for (const s of this.#o.subscribers) await s.setup?.(txOf(this.#o.db));
    for (const r of this.runners.values()) await r.start();
    const every = this.#o.lagLogMs ?? 30_000;
    if (every > 0) {
      this.#lagTimer = setInterval(() => void this.#logLag(), every);
      this.#lagTimer.unref();
    }
  }

  /** Stops every runner after its batch in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#lagTimer);
    await Promise.allSettled([...this.runners.values()].map((r) => r.stop()));
  }

  /** Lag of every consumer. */
  async lag(): Promise<ConsumerLag[]> {
    const out: ConsumerLag[] = [];
    for (const r of this.runners.values()) for (const l of await r.lag()) out.push({ consumer: r.name, ...l });
    return out;
  }

  /**
   * Rebuilds a subscriber from the start of its streams: stops its runner, empties its read model and
   * inbox, recreates its durable consumers, starts again and reports progress until it has caught up.
   * A process manager keeps its inbox: replaying it must never issue its commands twice.
   */
  async replay(name: string, onProgress: (p: ReplayProgress) => void = () => {}): Promise<ReplayProgress> {
    const runner = this.runners.get(name);
    if (!runner) throw new Error(`unknown consumer ${name}; known: ${[...this.runners.keys()].join(", ")}`);
    const s = runner.handler.subscriber;
    await runner.stop();
    for (const b of runner.bindings) await this.#o.jsm.consumers.delete(b.stream, name).catch(() => false);
    await this.#o.db.connection.transactional(async (trx) => {
      const tx = txOf(this.#o.db, trx);
      await s.reset?.(tx);
      if (s.apply) await tx.execute("delete from consumer_inbox where consumer = ?", [name], "run");
    });
    let total = 0;
    for (const b of runner.bindings) {
      const info = await this.#o.jsm.streams.info(b.stream, { subjects_filter: b.filter } as never);
      total += info.state.messages;
    }
    await runner.start();
    for (;;) {
      const pending = (await runner.lag()).reduce((n, l) => n + l.pending + l.ackPending, 0);
      const p = { consumer: name, done: Math.max(0, total - pending), total };
      onProgress(p);
      if (pending === 0) return p;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async #logLag(): Promise<void> {
    try {
      const lag = await this.lag();
      const behind = lag.filter((l) => l.pending + l.ackPending > 0);
      this.#o.logger.info({ lag: behind.length > 0 ? behind : "none" }, "consumer lag");
    } catch (err) {
      this.#o.logger.warn({ err: String(err) }, "could not read consumer lag");
    }
  }
}
