/** The outbox relay: publishes committed events to JetStream exactly once, in per-aggregate order. */
import { headers } from "@nats-io/nats-core";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { ContentTypes, Contexts, Headers, contextOf, type AggregateType } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { OutboxRow, Repository } from "../persistence/index.js";

/** Options of the relay. */
export interface RelayOptions {
  repo: Repository;
  js: JetStreamClient;
  /** Used after a crash or a failed publish to ask the stream what it already holds. */
  jsm: JetStreamManager;
  logger: Logger;
  /** Most publishes awaiting their JetStream ack at once. */
  window: number;
  /** Rows read per pass. */
  batchSize?: number;
  /** Fallback poll when nobody wakes the relay (recovery after a crash). */
  pollMs?: number;
  /**
   * Who deletes published rows. The group-commit writer does it within its next transaction; without
   * one the relay deletes them itself, a transaction per pass.
   */
  deleter?: PublishedRowDeleter | undefined;
  /** Most committed rows held in memory; past it the relay drops them and reads the outbox instead. */
  memoryLimit?: number;
}

/** Deletes outbox rows once they are published. */
export interface PublishedRowDeleter {
  /** Deletes these rows soon. */
  release(seqs: readonly number[]): void;
  /** Resolves once every row released so far is deleted. */
  released(): Promise<void>;
}

/** A relay that has had no publish acknowledged for this long holds no writer back. */
export const STALLED_MS = 500;

/** Longest wait for the deletion of published rows before the table is read anyway. */
const RELEASE_WAIT_MS = 5_000;

/** Figures of the relay. */
export interface RelayStats {
  published: number;
  duplicates: number;
  failures: number;
  /** Rows found already stored when verifying after a crash or failure (not published again). */
  verified: number;
  /** Passes that read the outbox table (start, after a failure, or when memory could not keep up). */
  scans: number;
  /** Passes fed from memory, with the rows the writer handed over at commit. */
  livePasses: number;
}

/**
 * Publishes committed outbox rows in commit order with `Nats-Msg-Id` = event_id.
 * Publishes of different aggregates overlap (up to `window`); one aggregate has at most one publish in
 * flight, so a failed publish can never be overtaken by a later version of the same aggregate.
 *
 * Two sources, one order. At start, after any failure, and whenever memory overflowed, the relay *scans*:
 * it reads the table in `seq` order until a read comes back short. Then it goes *live*: the writer hands it
 * each transaction's rows at commit (`offer`) and it publishes them from memory, without reading the table.
 * Rows offered during the scans are kept only if their `seq` is above everything the scans saw or the
 * relay published: `seq` grows in commit order (one writer), so those and only those were committed after
 * the last read. After a failure, or a crash, it resumes from what is unmarked; JetStream drops the
 * repeats by their msg id, and the first pass asks the stream about each aggregate's first row.
 */
export class OutboxRelay {
  readonly #o: Required<Omit<RelayOptions, "deleter">> & Pick<RelayOptions, "deleter">;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #pendingWake = false;
  // The first pass after start, and the one after any failure, may meet rows JetStream already stored.
  #verify = true;
  /** Live: the table holds nothing unpublished beyond what memory holds. */
  #live = false;
  #memory: OutboxRow[] = [];
  /** Memory dropped rows since the current scan began, so it cannot take over from it. */
  #memoryLost = false;
  /** Highest seq published (or found stored) so far. */
  #highWater = 0;
  /** Rows of the pass in progress not yet acknowledged or failed. */
  #unacked = 0;
  /** When the relay last made progress: an ack, or rows arriving while it had nothing (performance.now()). */
  #progressAt = 0;
  /** Who waits for the backlog to shrink (the writer's admission). */
  #roomWaiters: { limit: number; done: () => void }[] = [];
  readonly stats: RelayStats = { published: 0, duplicates: 0, failures: 0, verified: 0, scans: 0, livePasses: 0 };

  constructor(opts: RelayOptions) {
    this.#o = { batchSize: 1000, pollMs: 1000, deleter: undefined, memoryLimit: 50_000, ...opts };
  }

  /**
   * Committed rows waiting for their JetStream ack: handed over and not yet published, or in flight.
   * 0 while the relay reads the table (at start, after a failure): then the table is the buffer, and
   * nothing should wait for the relay.
   */
  get backlog(): number {
    return this.#live && this.#running ? this.#memory.length + this.#unacked : 0;
  }

  /**
   * Resolves once the backlog is at most `limit`, the relay leaves live mode, or `maxWaitMs` passes;
   * undefined when there is room already, or when the relay has rows but JetStream has acknowledged
   * nothing for {@link STALLED_MS} (NATS is away: the outbox table takes the commands meanwhile).
   * The writer waits on it before each transaction, so that commands are not accepted faster than
   * their events reach JetStream.
   */
  room(limit: number, maxWaitMs: number): Promise<void> | undefined {
    if (this.backlog <= limit || performance.now() - this.#progressAt > STALLED_MS) return undefined;
    return new Promise((resolve) => {
      const waiter = {
        limit,
        done: () => {
          clearTimeout(timer);
          this.#roomWaiters = this.#roomWaiters.filter((w) => w !== waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.done, maxWaitMs);
      this.#roomWaiters.push(waiter);
    });
  }

  #checkRoom(): void {
    if (this.#roomWaiters.length === 0) return;
    const backlog = this.backlog;
    for (const w of [...this.#roomWaiters]) if (backlog <= w.limit) w.done();
  }

  /** Rows the writer has just committed, in commit order. */
  offer(rows: readonly OutboxRow[]): void {
    if (!this.#running || rows.length === 0) return;
    if (this.#memory.length + rows.length > this.#o.memoryLimit) {
      // Falling behind: the table has them all; read it again.
      this.#memory = [];
      this.#memoryLost = true;
      this.#live = false;
      this.#checkRoom();
    } else {
      if (this.backlog === 0) this.#progressAt = performance.now();
      for (const r of rows) this.#memory.push(r);
    }
    this.wake();
  }

  /** Starts the publishing loop. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#live = false;
    this.#memory = [];
    this.#loop = this.#run();
  }

  /** Tells the relay that new rows were committed. */
  wake(): void {
    this.#pendingWake = true;
    this.#wake?.();
  }

  /** Waits until the outbox is empty, or the deadline passes; returns whether it emptied. */
  async flush(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if ((await this.#o.repo.outboxSize()) === 0) return true;
      this.wake();
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  /** Stops after the current pass. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#checkRoom();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let backoff = 0;
    while (this.#running) {
      this.#pendingWake = false;
      let full = false;
      try {
        const ok = this.#live ? await this.#livePass() : await this.#scanPass();
        this.#checkRoom();
        full = ok.full;
        backoff = ok.published ? 0 : Math.min(2000, backoff ? backoff * 2 : 50);
      } catch (err) {
        this.#o.logger.error({ err }, "outbox relay pass failed");
        this.#live = false;
        this.#checkRoom();
        backoff = Math.min(2000, backoff ? backoff * 2 : 50);
      }
      if (!this.#running) break;
      if (backoff > 0) await this.#sleep(backoff, false);
      else if (!full && !this.#pendingWake) await this.#sleep(this.#o.pollMs, true);
    }
  }

  /** One pass over the table; goes live when the table is caught up and memory holds the rest. */
  async #scanPass(): Promise<{ published: boolean; full: boolean }> {
    this.stats.scans++;
    // Rows published in the last pass must be gone before reading, or they would be read again.
    // A database that cannot delete them cannot do much else; the stream check and msg ids still guard.
    if (this.#o.deleter) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#o.deleter.released(), new Promise((r) => (timer = setTimeout(r, RELEASE_WAIT_MS)))]);
      clearTimeout(timer);
    }
    this.#memoryLost = false;
    const rows = await this.#o.repo.pendingOutbox(this.#o.batchSize);
    const published = rows.length === 0 || (await this.#publish(rows));
    const full = rows.length >= this.#o.batchSize;
    if (published && !full && !this.#memoryLost) {
      const cut = rows.reduce((m, r) => Math.max(m, Number(r.seq)), this.#highWater);
      this.#memory = this.#memory.filter((r) => r.seq > cut);
      this.#live = true;
    }
    return { published, full: full || (this.#live && this.#memory.length > 0) };
  }

  /** One pass over what the writer handed over; a failure sends the relay back to the table. */
  async #livePass(): Promise<{ published: boolean; full: boolean }> {
    if (this.#memory.length === 0) return { published: true, full: false };
    this.stats.livePasses++;
    const rows = this.#memory.splice(0, this.#o.batchSize);
    const published = await this.#publish(rows);
    if (!published) {
      this.#live = false;
      this.#memory = [];
    }
    return { published, full: published && this.#memory.length > 0 };
  }

  // A wakeable sleep ends early on wake(); a backoff sleep ends early only on stop().
  async #sleep(ms: number, wakeable: boolean): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        if (wakeable || !this.#running) {
          clearTimeout(t);
          resolve();
        }
      };
    });
    this.#wake = undefined;
  }

  /**
   * With one publish in flight per aggregate, only an aggregate's first unmarked row can have been
   * stored without its ack arriving (a crash, a timeout). If the stream's last message on that row's
   * subject carries its event_id, the row is marked instead of published again: exactly once even
   * when the outage outlasted JetStream's duplicate window.
   */
  async #dropStored(queues: Map<string, OutboxRow[]>, acked: number[]): Promise<void> {
    await Promise.all(
      [...queues.values()].map(async (q) => {
        const head = q[0]!;
        const stream = Contexts[contextOf(head.aggregate_type as AggregateType)].stream;
        const last = await this.#o.jsm.streams.getMessage(stream, { last_by_subj: head.subject }).catch(() => null);
        if (last?.header?.get(Headers.MsgId) === head.event_id) {
          q.shift();
          acked.push(Number(head.seq));
          this.stats.verified++;
        }
      }),
    );
  }

  /** Publishes one batch; marks the acknowledged rows; returns false when any publish failed. */
  async #publish(rows: OutboxRow[]): Promise<boolean> {
    const queues = new Map<string, OutboxRow[]>();
    for (const r of rows) {
      const key = `${r.aggregate_type}\u0000${r.aggregate_id}`;
      const q = queues.get(key);
      if (q) q.push(r);
      else queues.set(key, [r]);
    }
    const acked: number[] = [];
    this.#unacked = rows.length;
    if (this.#verify) await this.#dropStored(queues, acked);
    const ready = [...queues.keys()].filter((k) => queues.get(k)!.length > 0);
    let inflight = 0;
    let failed: unknown;
    await new Promise<void>((resolve) => {
      const pump = (): void => {
        while (failed === undefined && inflight < this.#o.window && ready.length > 0) {
          const key = ready.shift()!;
          const row = queues.get(key)!.shift()!;
          inflight++;
          const h = headers();
          h.set(Headers.ContentType, ContentTypes.MsgPack);
          h.set(Headers.EventType, row.event_type);
          h.set(Headers.EventVersion, String(row.event_version));
          this.#o.js
            .publish(row.subject, row.body, { msgID: row.event_id, headers: h })
            .then(
              (ack) => {
                this.#progressAt = performance.now();
                acked.push(Number(row.seq));
                if (ack.duplicate) this.stats.duplicates++;
                else this.stats.published++;
                if (queues.get(key)!.length > 0) ready.push(key);
              },
              (err) => {
                failed ??= err;
              },
            )
            .finally(() => {
              inflight--;
              this.#unacked--;
              this.#checkRoom();
              if (inflight === 0 && (failed !== undefined || ready.length === 0)) resolve();
              else pump();
            });
        }
        if (inflight === 0) resolve();
      };
      pump();
    });
    this.#unacked = 0;
    if (acked.length > 0) {
      for (const seq of acked) if (seq > this.#highWater) this.#highWater = seq;
      if (this.#o.deleter) this.#o.deleter.release(acked);
      else await this.#o.repo.markPublished(acked);
    }
    this.#verify = failed !== undefined;
    if (failed !== undefined) {
      this.stats.failures++;
      this.#o.logger.warn({ err: String(failed), published: acked.length }, "outbox publish failed; will retry");
      return false;
    }
    return true;
  }
}
