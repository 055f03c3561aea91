/** Starts every subscriber's runner, reports lag, and rebuilds a read model by replay while the service runs. */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { NerveError, errors } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { ConsumerBatchWriter, Database } from "../persistence/index.js";
import { DeadLetters } from "./dead-letters.js";
import { EventHandler } from "./event-handler.js";
import { resetReadModel } from "./read-model-reset.js";
import { followReplay, replayEnd, type ReplayEnd, type ReplayProgress } from "./replay-progress.js";
import { LAG_STALLED_MS } from "./backlog.js";
import { ConsumerRunner, DEFAULT_RETRY, type BacklogWatch, type RetryPolicy } from "./runner.js";
import { RoomWaiters } from "../outbox/room-waiters.js";
import { DUE_MARGIN_MS, clearIn, serverClock } from "./stranded.js";
import type { Subscriber } from "./subscriber.js";
import { FencedError, checkLeases, leaseName, type Leases } from "../cluster/index.js";
import { reportFailure, sleep, watch } from "../supervision/index.js";

/** The lease group of the durable consumers. */
export const CONSUMER_GROUP = "consumers";

type FenceExec = Parameters<typeof checkLeases>[0];

// The fence of a consumer's read-model transaction: its lease, under the epoch held now (or, given, under that one).
async function fenceConsumer(exec: FenceExec, leases: Leases, name: string, epoch?: number): Promise<void> {
  const f = leases.fence(name);
  if (!f || (epoch !== undefined && f.epoch !== epoch)) throw new FencedError([leaseName(CONSUMER_GROUP, name)]);
  await checkLeases(exec, leases.instanceId, [{ lease: leaseName(CONSUMER_GROUP, name), epoch: f.epoch }]);
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
  /**
   * Leases of the group `consumers`, keyed by subscriber name, when several instances share the
   * database: each durable consumer then runs on one instance at a time, its read-model transactions
   * fenced by the lease's epoch. Absent: every runner runs here.
   */
  leases?: Leases;
  /**
   * After a take, the longest wait before pulling while the former holder's deliveries may still be out
   * (#clear): they are redelivered only after ack_wait, and pulling earlier could apply later events first.
   */
  takeoverDelayMs?: number;
  /** Most stream sequences above a durable's floor a take hands back to JetStream (stranded.ts MAX_RETURNED; 0: never, wait instead). */
  maxHandedBack?: number;
  /** Where each consumer's handle times go (seconds per event, its read-model transaction included). */
  handleTime?: (consumer: string) => (seconds: number) => void;
  /** The SQLite write worker, when the service has one: write-only projections' batches and the process managers' inbox rows go through it. */
  batchWriter?: ConsumerBatchWriter;
  /**
   * Events a projection of this process may fall behind before commands wait for it ({@link ConsumerManager.room},
   * backlog.ts); 0 or absent: never.
   */
  backlogLimit?: number;
}

/** ack_wait of every durable consumer (runner.ts), the default of {@link ConsumerManagerOptions.takeoverDelayMs}. */
export const CONSUMER_ACK_WAIT_MS = 30_000;

/** How soon a take waiting for what a former holder left out looks again, when its wait is not known. */
const LOOK_AGAIN_MS = 250;

/** First and longest wait before a consumer whose start failed is started again. */
const START_RETRY_MIN_MS = 1000;
const START_RETRY_MAX_MS = 30_000;

/** Every subscribing context of this process. */
export class ConsumerManager {
  readonly deadLetters: DeadLetters;
  readonly handlers = new Map<string, EventHandler>();
  readonly runners = new Map<string, ConsumerRunner>();
  readonly #o: ConsumerManagerOptions;
  #lagTimer: NodeJS.Timeout | undefined;
  #stopping = false;
  /** Aborted by stop(): ends the waits of takes and of start retries. */
  readonly #halt = new AbortController();
  readonly #active = new Set<string>();
  /** Consumers taken over from a crashed holder, until when (performance.now()) they must not be pulled. */
  readonly #notBefore = new Map<string, number>();
  readonly #room = new RoomWaiters();
  /** Looks again once a reader may have stalled (it then tells nothing), while anyone waits. */
  #recheck: NodeJS.Timeout | undefined;
  /** Group commits that waited for a projection's backlog. */
  backlogWaits = 0;
  /** By consumer: the leases taken here, and how long they waited in all before pulling (#clear). */
  readonly takes = new Map<string, { takes: number; waitedMs: number }>();
  #setup: Promise<void> | undefined;
  /** The consumers with a replay running here. */
  readonly #replaying = new Set<string>();
  /** Replays between their runner's stop and start, by consumer: settles once the replay's runner is started or it failed. */
  readonly #resetting = new Map<string, Promise<void>>();

  constructor(opts: ConsumerManagerOptions) {
    this.#o = opts;
    this.deadLetters = new DeadLetters(opts.db, opts.batchWriter);
    const limit = opts.backlogLimit ?? 0;
    const changed = () => this.#check();
    for (const s of opts.subscribers) {
      // A process manager is never waited for: it issues commands, and would wait for its own.
      const watched: BacklogWatch | undefined = limit > 0 && !s.react ? { limit, changed } : undefined;
      const leases = opts.leases;
      // With leases, a read-model transaction commits only while this instance still holds the consumer.
      const h = new EventHandler(opts.db, s, leases ? (exec) => fenceConsumer(exec, leases, s.name) : undefined, opts.handleTime?.(s.name), opts.batchWriter);
      this.handlers.set(s.name, h);
      this.runners.set(s.name, new ConsumerRunner(opts.js, opts.jsm, h, this.deadLetters, opts.logger.child({ consumer: s.name }), opts.retry ?? DEFAULT_RETRY, watched));
    }
  }

  /**
   * The writer's admission for the projections (backlog.ts): undefined when none of this process's
   * projections holds commands back; else resolves once every one that does is within its limit again,
   * has stalled, or after `maxWaitMs`.
   */
  room(maxWaitMs: number): Promise<void> | undefined {
    const limit = this.#o.backlogLimit ?? 0;
    if (limit <= 0 || this.#worstHolding() === 0) return undefined;
    this.backlogWaits++;
    const wait = this.#room.wait(limit, maxWaitMs);
    this.#armRecheck();
    return wait;
  }

  // Lets go of the waiters once no reader holds commands back beyond their limit.
  #check(): void {
    if (this.#room.empty) return;
    this.#room.check(this.#worstHolding());
    if (!this.#room.empty) this.#armRecheck();
  }

  // A reader that stalls tells nothing more: while anyone waits, look again every quarter of LAG_STALLED_MS.
  #armRecheck(): void {
    this.#recheck ??= setTimeout(() => {
      this.#recheck = undefined;
      this.#check();
    }, LAG_STALLED_MS / 4).unref();
  }

  // The largest backlog among the readers holding commands back; 0 when none does.
  #worstHolding(): number {
    const now = performance.now();
    let worst = 0;
    for (const r of this.runners.values()) for (const b of r.backlogs) if (b.holds(now)) worst = Math.max(worst, b.behind);
    return worst;
  }

  /**
   * Runs each subscriber's extra DDL (an FTS5 table, trigram indexes), as one schema change; once (a failed
   * one runs again when asked again). On PostgreSQL it may wait up to a minute for another instance's
   * schema change and then build an index: the service runs it before it joins the partitions' leases.
   */
  setup(): Promise<void> {
    const { db } = this.#o;
    this.#setup ??= db
      .schemaChange(async (execute) => {
        for (const s of this.#o.subscribers) await s.setup?.({ dialect: db.dialect, execute });
      })
      .catch((err: unknown) => {
        this.#setup = undefined;
        throw err;
      });
    return this.#setup;
  }

  /** {@link setup} unless it ran, then starts every runner — or, with leases, those this instance holds. */
  async start(): Promise<void> {
    await this.setup();
    const leases = this.#o.leases;
    if (leases) {
      leases.on("acquired", (name, epoch) => watch(this.#o.logger, "consumer lease", this.#take(name, epoch)));
      leases.on("lost", (name) => {
        this.#active.delete(name);
        this.#notBefore.delete(name);
        watch(this.#o.logger, "consumer lease", this.runners.get(name)?.stop() ?? Promise.resolve());
      });
      await leases.start();
    } else {
      for (const r of this.runners.values()) {
        // A replay asked for before this start: its reset must not have a reader beside it.
        while (this.#resetting.has(r.name)) await this.#resetting.get(r.name);
        await r.start();
        this.#active.add(r.name);
      }
    }
    const every = this.#o.lagLogMs ?? 30_000;
    if (every > 0) {
      this.#lagTimer = setInterval(() => void this.#logLag(), every);
      this.#lagTimer.unref();
    }
  }

  /**
   * Stops every runner after its batch in progress, then releases the consumers' leases — but for one
   * still waiting for a former holder's deliveries to come back, left to lapse: its next holder takes it
   * as from a crash. (Its next holder waits for them either way, #clear; the lapse is kept from before.)
   */
  async stop(): Promise<void> {
    clearInterval(this.#lagTimer);
    this.#stopping = true;
    this.#halt.abort();
    await Promise.allSettled([...this.runners.values()].map((r) => r.stop()));
    // A consumer whose replay is resetting it is left to lapse too: the reset's fence holds its lease row
    // (for key share) until the reset commits, and the one release statement for all would wait for it past
    // its lock_timeout and fail — every consumer lease of the instance left to lapse.
    await this.#o.leases?.stop((name) => this.#waiting(name) > 0 || this.#resetting.has(name));
  }

  /**
   * The drain of a consumer lease being handed off: waits for a replay's reset, then stops the runner. A
   * take still waiting for a former holder's stranded deliveries is not waited for: the next holder reads
   * the same durable and waits for them itself (#clear).
   */
  async handOff(name: string): Promise<void> {
    // A replay's reset holds the lease row until it commits (its fence): released before, the hand-off's
    // release would wait for it and fail; the drain waits for it instead (the replay's start then stands).
    while (this.#resetting.has(name)) await this.#resetting.get(name);
    this.#active.delete(name);
    await this.runners.get(name)?.stop();
  }

  // How long a consumer just taken may still wait before it is pulled (ms; 0: not waiting).
  #waiting(name: string): number {
    return Math.max(0, (this.#notBefore.get(name) ?? 0) - performance.now());
  }

  /**
   * Starts a consumer whose lease this instance took under `epoch`, once nothing its former holder left
   * unacknowledged can still come back after newer messages (#clear). A take whose lease lapsed and was
   * taken again meanwhile (a newer epoch, with its own take and its own wait) does nothing.
   */
  async #take(name: string, epoch: number): Promise<void> {
    const runner = this.runners.get(name);
    if (!runner) return;
    const bound = this.#o.takeoverDelayMs ?? CONSUMER_ACK_WAIT_MS;
    // #clear waits at most this long (its limit).
    const notBefore = performance.now() + 2 * bound + DUE_MARGIN_MS;
    this.#notBefore.set(name, notBefore);
    const taken = performance.now();
    await this.#clear(name, epoch, runner, bound);
    const t = this.takes.get(name) ?? { takes: 0, waitedMs: 0 };
    this.takes.set(name, { takes: t.takes + 1, waitedMs: t.waitedMs + (performance.now() - taken) });
    // Cut short by a stop, the wait is not over: kept, so that the stop lets this lease lapse instead of
    // releasing it (chaos audit: the stop's abort ended the wait, the lease was released, and a next
    // holder of a release before #clear pulled at once, before the crashed holder's deliveries came back).
    if (!this.#halt.signal.aborted && this.#notBefore.get(name) === notBefore) this.#notBefore.delete(name);
    await this.#startWhileHere(name, runner, epoch);
  }

  /**
   * Waits until the durables of a consumer just taken may be pulled (stranded.ts): at once when nothing is
   * out and no reader waits at the server — the usual case, whether the former holder released the lease
   * or crashed; at once too when deliveries are out but no reader waits, once they are handed back (NAKs:
   * they then come first); else — handing back failed, or too many to name — until they are due again, by
   * the server's clock (a known wait is always waited out). Not known — a durable that cannot be read,
   * another reader's pull request waiting at the server, the server's clock unread — it looks again, at
   * most `bound` (ack_wait) plus the margin after the later of the take and the last look that saw a
   * request waiting: a delivery to another reader happens only into such a request (a frozen holder's
   * stays open up to its expiry, runner.ts's PULL_EXPIRES_MS, past the take: review).
   * Past twice that after the take nothing is waited for any longer (said): every delivery made into a
   * request opened before the take is due by then; what still holds it is a reader pulling without its
   * lease. Ends early once the consumer no longer belongs here under `epoch`, or at the stop.
   */
  async #clear(name: string, epoch: number, runner: ConsumerRunner, bound: number): Promise<void> {
    if (bound <= 0) return;
    const taken = performance.now();
    const limit = taken + 2 * bound + DUE_MARGIN_MS;
    let open = taken;
    let clock: ((at?: number) => number) | undefined;
    while (this.#here(name, epoch)) {
      let wait: number | undefined;
      try {
        const out = await runner.outstanding();
        const stranded = out.filter((d) => d.ackPending > 0);
        const summary = () => stranded.map((d) => ({ stream: d.stream, ack_pending: d.ackPending }));
        if (out.some((d) => d.waiting > 0)) open = performance.now();
        else if (stranded.length > 0) {
          // Nobody can take more of them: handed back, they come before anything newer, at once.
          const returned = await runner.returnStranded(out, this.#o.maxHandedBack).catch((err: unknown) => {
            this.#o.logger.debug({ consumer: name, err }, "could not hand a former holder's deliveries back; waiting for them");
            return false;
          });
          if (returned) {
            this.#o.logger.info({ consumer: name, out: summary() }, "handed a former holder's deliveries back to JetStream before pulling");
            return;
          }
          // Not handed back: waited for until due, by the server's clock (read while nobody waits: only then is it used).
          clock ??= await serverClock(this.#o.jsm, stranded[0]!.stream).catch((err: unknown) => {
            this.#o.logger.debug({ consumer: name, err }, "could not read the server's clock; looking again");
            return undefined;
          });
        }
        wait = clearIn(out, clock?.());
        if (wait !== undefined && wait > 0) this.#o.logger.info({ consumer: name, wait_ms: wait, out: summary() }, "waiting for a former holder's deliveries to come back before pulling");
      } catch {
        // No answer (JetStream restarting, a timeout): not known, so waited on like deliveries out —
        // pulling at once could apply a user's later events before earlier ones stranded (chaos audit).
        wait = undefined;
      }
      if (wait === 0) return;
      const now = performance.now();
      if (now >= limit) {
        this.#o.logger.warn({ consumer: name, waited_ms: Math.round(now - taken) }, "another reader still took deliveries of this consumer twice ack_wait after the take (one pulling without its lease?): pulling now");
        return;
      }
      if (wait === undefined) {
        const cap = Math.min(open + bound + DUE_MARGIN_MS, limit);
        if (now >= cap) return;
        wait = Math.min(LOOK_AGAIN_MS, cap - now);
      }
      await sleep(Math.min(wait, limit - now), this.#halt.signal);
    }
  }

  /** Whether `name` still belongs here as it did when `epoch` was taken (no leases: until the stop). */
  #here(name: string, epoch: number | undefined): boolean {
    return !this.#stopping && (epoch === undefined || this.#o.leases?.fence(name)?.epoch === epoch);
  }

  /**
   * Starts a runner, and retries a start that failed (JetStream unavailable past ensure()'s 30 s, a
   * durable that must be fixed by hand) with a growing back-off for as long as the consumer belongs here
   * under `epoch`: each failure is logged and counted. The lease is kept rather than released: rendezvous
   * places it here, so this instance would take it again at its next round, and what keeps the start
   * from working (JetStream) would mostly keep any other instance's from working too. While a replay of
   * the consumer resets it, the start waits for the replay's own start (or its failure).
   */
  async #startWhileHere(name: string, runner: ConsumerRunner, epoch: number | undefined): Promise<void> {
    let backoff = START_RETRY_MIN_MS;
    while (this.#here(name, epoch)) {
      const resetting = this.#resetting.get(name);
      if (resetting) {
        await resetting;
        continue;
      }
      try {
        await runner.start();
        // Stopped meanwhile by the lease's loss: the start ended without a reader.
        if (runner.running && this.#here(name, epoch)) this.#active.add(name);
        return;
      } catch (err) {
        reportFailure(this.#o.logger, `consumer ${name}`, err, "consumer could not start; retrying while it belongs here");
      }
      await sleep(backoff, this.#halt.signal);
      backoff = Math.min(START_RETRY_MAX_MS, backoff * 2);
    }
  }

  /** Whether `name` belongs here now: always without leases, else while this instance holds its lease. */
  runsHere(name: string): boolean {
    return !this.#o.leases || this.#o.leases.fence(name) !== undefined;
  }

  /** The instance whose lease on `name` is live in the database (undefined: none, or no leases). */
  async holderOf(name: string): Promise<string | undefined> {
    return this.#o.leases?.holderOf(name);
  }

  /** The consumers running on this instance now (all of them, unless leases spread them over instances). */
  active(): string[] {
    return [...this.#active].sort();
  }

  /** Lag of every consumer; rejects when any durable's could not be read ({@link lagSettled} has the rest). */
  async lag(): Promise<ConsumerLag[]> {
    const { lag, failed } = await this.lagSettled();
    if (failed.length > 0) throw failed[0]!.err;
    return lag;
  }

  /**
   * Lag of every consumer on every stream, every durable asked at once. The reads that failed (a durable
   * gone, JetStream not answering in time) are listed apart, with their error: one of them leaves the
   * others' figures as they are.
   */
  async lagSettled(): Promise<{ lag: ConsumerLag[]; failed: { consumer: string; stream: string; err: unknown }[] }> {
    const runners = [...this.runners.values()];
    const reads = await Promise.all(runners.map((r) => r.lagSettled()));
    const lag: ConsumerLag[] = [];
    const failed: { consumer: string; stream: string; err: unknown }[] = [];
    reads.forEach((bindings, i) => {
      const consumer = runners[i]!.name;
      for (const b of bindings) {
        if ("err" in b) failed.push({ consumer, stream: b.stream, err: b.err });
        else lag.push({ consumer, ...b });
      }
    });
    return { lag, failed };
  }

  /**
   * Rebuilds a subscriber from the start of its streams: stops its runner, recreates its durable consumers
   * from the start, empties its read model and inbox, starts again and reports progress until it has
   * caught up. A process manager keeps its inbox: replaying it must never issue its commands twice. A
   * durable that cannot be deleted fails the replay before anything is emptied; whatever fails, the
   * runner is started again (retried while the consumer belongs here), so a failed replay never leaves
   * the consumer stopped — on an emptied read model it rebuilds it all the same. One replay of a consumer
   * at a time here: another is refused (conflict) until it ends.
   */
  async replay(name: string, onProgress: (p: ReplayProgress) => void = () => {}): Promise<ReplayProgress> {
    const runner = this.runners.get(name);
    if (!runner) throw errors.notFound(`unknown consumer ${name}; known: ${[...this.runners.keys()].join(", ")}`);
    const epoch = this.#o.leases?.fence(name)?.epoch;
    if (this.#o.leases && epoch === undefined) throw errors.unavailable(`consumer ${name} runs on another instance: replay it there`);
    // A second one would stop the runner and empty the read model under the first one's progress.
    if (this.#replaying.has(name)) throw errors.conflict(`a replay of ${name} is running on this instance: wait for it to end`);
    this.#replaying.add(name);
    try {
      const end = await this.#rebuild(name, runner, epoch);
      return await followReplay(runner, end, () => this.#here(name, epoch), onProgress);
    } finally {
      this.#replaying.delete(name);
    }
  }

  /**
   * A replay's restart: the runner stopped, its durables replaced, its read model emptied, and started
   * again — with no other start of it in between ({@link #resetting}): a runner started then would read
   * the new durable, apply and acknowledge events whose rows the reset then deletes, and nothing would
   * deliver them again. Answers where the replay ends: its events' count and each binding's last event.
   */
  async #rebuild(name: string, runner: ConsumerRunner, epoch: number | undefined): Promise<ReplayEnd> {
    const { db, leases, batchWriter, jsm, logger } = this.#o;
    const s = runner.handler.subscriber;
    let ended!: () => void;
    this.#resetting.set(name, new Promise<void>((resolve) => (ended = resolve)));
    let started = false;
    try {
      // The reset commits only while the lease is held here under the replay's epoch: an instance that lost
      // the consumer meanwhile would otherwise empty the read model its next holder is filling.
      const fence = leases && ((exec: FenceExec) => fenceConsumer(exec, leases, name, epoch));
      for (let attempt = 1; ; attempt++) {
        await runner.stop();
        // The lease lost meanwhile (its runner is its next holder's now), or the service stopping.
        if (!this.#here(name, epoch)) throw errors.unavailable(`consumer ${name} no longer runs here: its replay stopped; replay it where it runs`);
        await runner.replaceDurables();
        // A crashed holder's deliveries were the old durable's: nothing of them can come back to the new one.
        this.#notBefore.delete(name);
        await resetReadModel(db, s, batchWriter, fence).catch((err: unknown) => {
          if (!(err instanceof FencedError)) throw err;
          throw new NerveError("unavailable", `consumer ${name} moved to another instance before its reset: nothing was emptied; replay it where it runs`, { cause: err });
        });
        if (!runner.running) break;
        // Started by a caller that did not wait for the reset: what it applied may be gone with its acks standing.
        logger.warn({ consumer: name, attempt }, "consumer started during its replay's reset: replacing its durables and emptying its read model again");
        if (attempt >= 3) throw errors.internal(`consumer ${name} was started during its replay's reset ${attempt} times: its read model may miss events; replay it again`);
      }
      const end = await replayEnd(runner, jsm);
      if (!this.#here(name, epoch)) throw errors.unavailable(`consumer ${name} no longer runs here: its replay stopped; replay it where it runs`);
      await runner.start();
      started = true;
      return end;
    } finally {
      this.#resetting.delete(name);
      ended();
      if (!started) watch(logger, `consumer ${name}`, this.#startWhileHere(name, runner, epoch));
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
