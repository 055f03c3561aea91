/** The actor system: one actor per (aggregate type, id), created on first use, capped and passivated. */
import { errors } from "../../contracts/index.js";
import { Actor, type StateLoader } from "./actor.js";

/** Options of the actor system. */
export interface ActorSystemOptions {
  /** Loads committed state on activation. */
  load: StateLoader;
  /** Most jobs waiting in one mailbox; past it, `unavailable` at once. */
  mailboxSize: number;
  /** Most live actors; the least recently used idle ones go first. */
  maxActors: number;
  /** An actor idle this long is passivated. */
  idleMs: number;
}

/** Figures for metrics and benchmarks. */
export interface ActorSystemStats {
  live: number;
  activations: number;
  passivations: number;
  rejected: number;
}

/** Keyed actors with bounded mailboxes, LRU cap and idle passivation. */
export class ActorSystem {
  // Map iteration order is insertion order: re-inserting on use keeps it least-recently-used first.
  readonly #actors = new Map<string, Actor>();
  readonly #opts: ActorSystemOptions;
  readonly #sweeper: NodeJS.Timeout;
  #accepting = true;
  readonly stats: ActorSystemStats = { live: 0, activations: 0, passivations: 0, rejected: 0 };

  constructor(opts: ActorSystemOptions) {
    this.#opts = opts;
    this.#sweeper = setInterval(() => this.#passivateIdle(), Math.max(10, Math.floor(opts.idleMs / 2)));
    this.#sweeper.unref();
  }

  /** Runs a job exclusively on an actor, after every job queued before it. */
  exclusive<T>(aggregateType: string, aggregateId: string, job: (actor: Actor) => Promise<T>): Promise<T> {
    if (!this.#accepting) return Promise.reject(errors.unavailable("shutting down"));
    const actor = this.#get(aggregateType, aggregateId);
    if (actor.backlog >= this.#opts.mailboxSize) {
      this.stats.rejected++;
      return Promise.reject(errors.unavailable(`${aggregateType} ${aggregateId} is overloaded`, { backlog: actor.backlog }));
    }
    return actor.enqueue(job);
  }

  /** Reads an actor's committed state beside its running commands (a shared handler). */
  async read<T>(aggregateType: string, aggregateId: string, fn: (actor: Actor) => T): Promise<T> {
    const actor = this.#get(aggregateType, aggregateId);
    await actor.ready;
    return fn(actor);
  }

  /** Live actors. */
  get size(): number {
    return this.#actors.size;
  }

  /** Stops taking new jobs and waits until every mailbox is empty. */
  async drain(): Promise<void> {
    this.#accepting = false;
    while ([...this.#actors.values()].some((a) => !a.idle)) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * Forgets every idle actor whose id matches, and those that become idle within `settleMs`: their next
   * use loads them from storage again. Called when a partition is lost or handed off — whoever owns it
   * next may change those aggregates. A job still running on a forgotten actor finishes; its commit
   * then fails the fence check; the jobs queued behind it refuse (the actor is `retired`). Resolves with
   * the number of actors forgotten.
   */
  async forget(match: (aggregateId: string) => boolean, settleMs = 0): Promise<number> {
    const until = Date.now() + settleMs;
    let forgotten = 0;
    for (;;) {
      let busy = 0;
      for (const [key, a] of this.#actors) {
        if (!match(a.aggregateId)) continue;
        if (a.idle || Date.now() >= until) {
          this.#actors.delete(key);
          // Its queued jobs refuse (unavailable): beside the next actor of its aggregate they decided on
          // its old state, and a keyed command and its retry ran on both (idempotency audit).
          if (!a.idle) a.retired = true;
          forgotten++;
        } else busy++;
      }
      this.stats.live = this.#actors.size;
      if (busy === 0) return forgotten;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Stops the passivation timer and forgets every actor. */
  close(): void {
    clearInterval(this.#sweeper);
    this.#actors.clear();
  }

  #get(aggregateType: string, aggregateId: string): Actor {
    const key = `${aggregateType}\u0000${aggregateId}`;
    let actor = this.#actors.get(key);
    if (actor?.failed && actor.idle) {
      this.#actors.delete(key);
      actor = undefined;
    }
    if (actor) {
      this.#actors.delete(key);
    } else {
      actor = new Actor(aggregateType, aggregateId, this.#opts.load);
      this.stats.activations++;
      this.#evictOverCap();
    }
    this.#actors.set(key, actor);
    this.stats.live = this.#actors.size;
    return actor;
  }

  /**
   * Makes room for one more actor at the cap by passivating the least recently used idle ones, down to
   * `maxActors / 256` below the cap. One at a time, each activation paid for a walk over the Map's
   * deleted entries: V8 leaves them at the front of its table until it rehashes, and at a full cache
   * of 100,000 that walk cost ~25 µs per activation (`npm run bench:actor-lru`). In batches the walk is
   * shared by every eviction of the batch. Below 256 actors the batch is one, as before.
   */
  #evictOverCap(): void {
    const max = this.#opts.maxActors;
    if (this.#actors.size < max) return;
    const floor = max - Math.max(1, Math.floor(max / 256));
    for (const [key, a] of this.#actors) {
      if (this.#actors.size <= floor) break;
      if (a.idle) {
        this.#actors.delete(key);
        this.stats.passivations++;
      }
    }
  }

  #passivateIdle(): void {
    const cutoff = Date.now() - this.#opts.idleMs;
    for (const [key, a] of this.#actors) {
      if (a.lastUsed > cutoff) break; // LRU order: everything after is newer
      if (a.idle) {
        this.#actors.delete(key);
        this.stats.passivations++;
      }
    }
    this.stats.live = this.#actors.size;
  }
}
