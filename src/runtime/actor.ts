/** One keyed actor: an aggregate instance's committed state and its mailbox. */

/** Loads an aggregate's committed state from storage. */
export type StateLoader = (aggregateType: string, aggregateId: string) => Promise<{ state: unknown; version: number } | undefined>;

/** A queued exclusive job and the settling of its caller's promise. */
interface Job {
  job: (actor: Actor) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** An aggregate instance in memory. Its state is always the committed one: commands swap it only after commit. */
export class Actor {
  state: unknown = null;
  version = 0;
  lastUsed = Date.now();
  readonly #queue: Job[] = [];
  #running = false;
  #inJob = 0;
  #ready: Promise<void>;

  constructor(
    readonly aggregateType: string,
    readonly aggregateId: string,
    private readonly loader: StateLoader,
  ) {
    this.#ready = this.reload();
    this.#ready.catch(() => (this.failed = true));
  }

  /** Whether activation or a reload failed: the system then replaces the actor instead of using it. */
  failed = false;

  /**
   * Forgotten while busy (its partition lost or handed off): the system made or will make another actor
   * for its aggregate, so the jobs still queued on this one must not decide (see CommandBus).
   */
  retired = false;

  /** Resolves once the actor's state has been loaded. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** Jobs waiting or running. */
  get backlog(): number {
    return this.#queue.length + this.#inJob;
  }

  /** Whether nothing runs or waits. */
  get idle(): boolean {
    return !this.#running && this.#queue.length === 0;
  }

  /**
   * Replaces the in-memory state with the stored one (after a bug, or a failed commit). When that fails
   * the state may be behind storage (a commit whose answer was lost did land): the actor is failed — the
   * jobs waiting for it fail, and the system replaces it at its next use, which loads it afresh.
   */
  async reload(): Promise<void> {
    try {
      const snap = await this.loader(this.aggregateType, this.aggregateId);
      this.state = snap?.state ?? null;
      this.version = snap?.version ?? 0;
    } catch (err) {
      this.failed = true;
      this.#ready = Promise.reject(err);
      this.#ready.catch(() => undefined);
      throw err;
    }
  }

  /** Queues an exclusive job; jobs of one actor run strictly one at a time, in arrival order. */
  enqueue<T>(job: (actor: Actor) => Promise<T>): Promise<T> {
    this.lastUsed = Date.now();
    return new Promise<T>((resolve, reject) => {
      // One record per job, not a closure over two promise chains of its own: one is queued with every command.
      this.#queue.push({ job, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#running) void this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      await this.#ready.catch(() => undefined);
      for (let next = this.#queue.shift(); next; next = this.#queue.shift()) {
        this.#inJob = 1;
        try {
          // A failed activation (or reload) fails the job: never decide on a state that could not be loaded.
          await this.#ready;
          next.resolve(await next.job(this));
        } catch (err) {
          next.reject(err);
        }
        this.#inJob = 0;
      }
    } finally {
      this.#running = false;
      this.lastUsed = Date.now();
    }
  }
}
