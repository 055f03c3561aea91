/**
 * Partition leases in PostgreSQL: the ownership of instances that share one database. Every second an
 * instance renews its membership and its leases (by the database's clock), computes where each
 * partition belongs (rendezvous over the live instances), acquires what belongs to it and is free,
 * and hands off what belongs elsewhere. Taking a partition raises its epoch: the fencing token every
 * commit checks (fencing.ts). By its own monotonic clock an instance gives a partition up before its
 * lease can have expired in the database, so it never acts on a partition someone else may hold.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "../log/index.js";
import type { Database } from "../persistence/index.js";
import { reportFailure, sleep, supervise, watch, type Supervised } from "../supervision/index.js";
import type { Fence, Ownership, OwnershipEvents } from "./ownership.js";
import { PARTITIONS } from "./partition.js";
import { partitionsOf } from "./rendezvous.js";

/** Options of a lease manager. */
export interface LeaseOptions {
  db: Database;
  instanceId: string;
  logger: Logger;
  /** A lease's length (ms), by the database's clock. */
  ttlMs?: number;
  /** How often leases and membership are renewed (ms). */
  renewEveryMs?: number;
  /**
   * Called before a partition is handed off gracefully (it no longer takes commands by then): resolves
   * once its mailboxes are drained, its commits done and its relay's publishes acknowledged.
   */
  drain?: (partition: number) => Promise<void>;
  /** Called after a partition was released gracefully: nudge its next owner. */
  released?: (partition: number) => void;
}

interface Held {
  epoch: number;
  /** performance.now() after which the lease may have lapsed in the database. */
  validUntil: number;
}

/** Figures of the lease manager. */
export interface LeaseStats {
  acquired: number;
  released: number;
  lost: number;
  ticks: number;
}

/** Ownership through leases in PostgreSQL. */
export class LeaseManager extends EventEmitter<OwnershipEvents> implements Ownership {
  readonly fenced = true;
  readonly instanceId: string;
  readonly stats: LeaseStats = { acquired: 0, released: 0, lost: 0, ticks: 0 };
  readonly #o: Required<Pick<LeaseOptions, "ttlMs" | "renewEveryMs">> & LeaseOptions;
  readonly #held = new Map<number, Held>();
  /** Partitions being handed off: held (and renewed) but no longer taking work. */
  readonly #releasing = new Set<number>();
  #loop: Supervised | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #stopped = false;

  constructor(opts: LeaseOptions) {
    super();
    this.#o = { ttlMs: 5000, renewEveryMs: 1000, ...opts };
    this.instanceId = opts.instanceId;
  }

  /** Longest a lease counts as held after the renewal that was sent at a moment: a fifth of it is margin. */
  get #validity(): number {
    return this.#o.ttlMs * 0.8;
  }

  fence(partition: number): Fence | undefined {
    const h = this.#held.get(partition);
    if (!h || this.#releasing.has(partition)) return undefined;
    if (performance.now() > h.validUntil) {
      this.#lose(partition, "lease not renewed in time");
      return undefined;
    }
    return { partition, epoch: h.epoch };
  }

  held(): number[] {
    return [...this.#held.keys()].filter((p) => this.fence(p) !== undefined).sort((a, b) => a - b);
  }

  /** Makes the lease rows, joins, takes what belongs here, then renews every `renewEveryMs`. */
  async start(): Promise<void> {
    const { db } = this.#o;
    const values = Array.from({ length: PARTITIONS }, () => "(?, 0)").join(",");
    await db.execute(`insert into nerve_leases (partition_no, epoch) values ${values} on conflict (partition_no) do nothing`, Array.from({ length: PARTITIONS }, (_, p) => p), "run");
    await this.tick();
    // Gives up lapsed leases even while the database cannot be reached (no round completes then).
    this.#watchdog = setInterval(() => this.held(), Math.min(250, this.#o.renewEveryMs));
    this.#watchdog.unref();
    this.#loop = supervise(this.#o.logger, "leases", async (signal) => {
      while (!signal.aborted) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          void sleep(this.#o.renewEveryMs, signal).then(resolve);
        });
        this.#wake = undefined;
        // A database that stops answering must not hold the loop: the leases lapse by the watchdog anyway.
        if (!signal.aborted) await bounded(this.tick(), this.#o.ttlMs, "lease round");
      }
    });
  }

  /** Runs the next round now (another instance released a partition that may belong here). */
  wake(): void {
    this.#wake?.();
  }

  /** One round: membership, renewals, acquisitions, hand-offs. */
  async tick(): Promise<void> {
    if (this.#stopped) return;
    const { db, instanceId: me, ttlMs } = this.#o;
    const sent = performance.now();
    this.stats.ticks++;
    await db.execute(
      `insert into nerve_instances (instance_id, seen_until, started_on) values (?, now() + ? * interval '1 millisecond', now())
       on conflict (instance_id) do update set seen_until = excluded.seen_until`,
      [me, ttlMs],
      "run",
    );
    const live = (await db.execute<{ instance_id: string }[]>("select instance_id from nerve_instances where seen_until > now()", [], "all")).map((r) => r.instance_id);
    await this.#renew(sent);
    const wanted = new Set(partitionsOf(me, live, PARTITIONS));
    await this.#acquire(
      [...wanted].filter((p) => !this.#held.has(p)),
      sent,
    );
    for (const p of this.#held.keys()) if (!wanted.has(p) && !this.#releasing.has(p)) this.#handOff(p);
  }

  /** Stops renewing and releases every lease (the caller has drained everything first), then leaves. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    await this.#loop?.stop();
    const held = [...this.#held].map(([p, h]) => ({ p, h }));
    try {
      await bounded(
        (async () => {
          for (const { p, h } of held) await this.#release(p, h.epoch);
          await this.#o.db.execute("delete from nerve_instances where instance_id = ?", [this.#o.instanceId], "run");
        })(),
        this.#o.ttlMs,
        "releasing leases",
      );
    } catch (err) {
      // The leases lapse by themselves within ttlMs.
      reportFailure(this.#o.logger, "leases", err, "releasing leases at shutdown failed; they lapse by themselves");
    }
    for (const { p } of held) this.#forget(p, "released");
  }

  async #renew(sent: number): Promise<void> {
    const held = [...this.#held];
    if (held.length === 0) return;
    const rows = await this.#o.db.execute<{ partition_no: number }[]>(
      `update nerve_leases set lease_until = now() + ? * interval '1 millisecond'
       where owner = ? and (partition_no, epoch) in (${held.map(() => "(?, ?)").join(",")}) returning partition_no`,
      [this.#o.ttlMs, this.#o.instanceId, ...held.flatMap(([p, h]) => [p, h.epoch])],
      "all",
    );
    const renewed = new Set(rows.map((r) => Number(r.partition_no)));
    for (const [p, h] of held) {
      if (renewed.has(p)) h.validUntil = sent + this.#validity;
      else this.#lose(p, "lease taken over");
    }
  }

  async #acquire(partitions: number[], sent: number): Promise<void> {
    if (partitions.length === 0) return;
    // A free lease, a lapsed one, or our own (lost by our clock, not yet by the database's): a new epoch.
    const rows = await this.#o.db.execute<{ partition_no: number; epoch: number | string }[]>(
      `update nerve_leases set owner = ?, epoch = epoch + 1, lease_until = now() + ? * interval '1 millisecond'
       where partition_no in (${partitions.map(() => "?").join(",")}) and (owner is null or owner = ? or lease_until is null or lease_until < now())
       returning partition_no, epoch`,
      [this.#o.instanceId, this.#o.ttlMs, ...partitions, this.#o.instanceId],
      "all",
    );
    for (const r of rows) {
      const p = Number(r.partition_no);
      const epoch = Number(r.epoch);
      this.#held.set(p, { epoch, validUntil: sent + this.#validity });
      this.stats.acquired++;
      this.#o.logger.info({ partition: p, epoch }, "partition acquired");
      this.emit("acquired", p, epoch);
    }
  }

  // Graceful: no new work, drain, release, nudge. Renewals go on meanwhile, so the lease cannot lapse.
  #handOff(p: number): void {
    this.#releasing.add(p);
    this.#o.logger.info({ partition: p }, "handing partition off");
    watch(
      this.#o.logger,
      "lease hand-off",
      (async () => {
        try {
          await this.#o.drain?.(p);
          const h = this.#held.get(p);
          if (h && !this.#stopped) {
            await this.#release(p, h.epoch);
            this.#forget(p, "released");
            this.#o.released?.(p);
          }
        } finally {
          this.#releasing.delete(p);
        }
      })(),
    );
  }

  async #release(p: number, epoch: number): Promise<void> {
    await this.#o.db.execute("update nerve_leases set owner = null, lease_until = now() where partition_no = ? and owner = ? and epoch = ?", [p, this.#o.instanceId, epoch], "run");
  }

  #lose(p: number, why: string): void {
    this.#o.logger.warn({ partition: p, why }, "partition lost");
    this.stats.lost++;
    this.#forget(p, "lost");
  }

  #forget(p: number, how: "lost" | "released"): void {
    if (!this.#held.delete(p)) return;
    if (how === "released") this.stats.released++;
    this.emit("lost", p);
  }
}

/** `work`, or a rejection after `ms` (the work itself goes on; its late failure is ignored). */
function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  work.catch(() => undefined);
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
