/**
 * Leases in PostgreSQL: exclusive, expiring ownership of named things — the 64 partitions of the
 * aggregates, the durable consumers — among instances that share one database. Every second an
 * instance renews its membership of a group and its leases (by the database's clock), computes where
 * each key belongs (rendezvous over the group's live members), acquires what belongs to it and is
 * free, and hands off what belongs elsewhere. Taking a lease raises its epoch: the fencing token every
 * write under it checks (fencing.ts). By its own monotonic clock an instance gives a lease up before
 * it can have expired in the database, so it never acts on something someone else may hold. Every
 * statement here runs on the leases' own connections (Database.leaseExecute), which no commit, projection
 * or query can take.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "../log/index.js";
import type { Database } from "../persistence/index.js";
import { FailureSpell, reportFailure, sleep, supervise, watch, type Supervised } from "../supervision/index.js";
import { placeOf } from "./rendezvous.js";

/** Options of a lease manager. */
export interface LeaseOptions {
  db: Database;
  instanceId: string;
  logger: Logger;
  /** The membership group (`partitions`, `consumers`): placement is computed among its live members. */
  group: string;
  /** What the group's members compete for. */
  keys: readonly string[];
  /** A lease's length (ms), by the database's clock. */
  ttlMs?: number;
  /** How often leases and membership are renewed (ms). */
  renewEveryMs?: number;
  /**
   * Called before a lease is handed off gracefully (it no longer counts as held by then): resolves once
   * the work under it is finished — mailboxes drained, commits done, publishes acknowledged.
   */
  drain?: (key: string) => Promise<void>;
  /**
   * Longest a hand-off's drain may take (ms, default 60 s). Past it the lease is given up without a
   * release: it lapses within a lease and its next holder takes it as from a crash (fencing keeps anything
   * still in flight here from landing). A drain that never ended kept the lease — renewed, served by
   * nobody — for good.
   */
  drainTimeoutMs?: number;
  /** Called after a lease was released gracefully: nudge its next owner. */
  released?: (key: string) => void;
  /**
   * Whether this instance can serve what it leases now (its NATS connection up, or down for less than a
   * moment). Its membership says so (`serving`), and placement counts the members that can serve, when
   * any can. One that cannot, while another can, takes nothing and renews none of its leases: they lapse
   * within a lease for those to take — an instance cut off from NATS but not from the database otherwise
   * kept its partitions (and consumers) for as long as the cut lasted, every command to them unanswered.
   * When none can (NATS down for every instance) everyone keeps what it holds, rather than all leases
   * lapsing and moving about on the way back. Default: always.
   */
  eligible?: () => boolean;
}

/** A held lease: its key and epoch (the fencing token of the writes under it). */
export interface LeaseFence {
  readonly key: string;
  readonly epoch: number;
}

/** Events of a lease manager: acquired (with the new epoch and whether the last holder released it), lost or released. */
export type LeaseEvents = { acquired: [key: string, epoch: number, graceful: boolean]; lost: [key: string] };

interface Held {
  epoch: number;
  /** performance.now() after which the lease may have lapsed in the database. */
  validUntil: number;
}

/** Figures of a lease manager. */
export interface LeaseStats {
  acquired: number;
  released: number;
  lost: number;
  rounds: number;
  /** Rounds that failed (the database refused or did not answer in a lease's length); the next one runs on time. */
  failedRounds: number;
}

/** The database's name of a lease: its group and key. */
export const leaseName = (group: string, key: string): string => `${group}/${key}`;

/** Leases of one group in PostgreSQL. */
export class Leases extends EventEmitter<LeaseEvents> {
  readonly stats: LeaseStats = { acquired: 0, released: 0, lost: 0, rounds: 0, failedRounds: 0 };
  readonly #o: Required<Pick<LeaseOptions, "ttlMs" | "renewEveryMs">> & LeaseOptions;
  readonly #held = new Map<string, Held>();
  /** Leases being handed off: held (and renewed) but no longer counted as held. */
  readonly #releasing = new Set<string>();
  /** Leases being handed off whose release statement was sent: a renewal that missed them is explained by it. */
  readonly #releaseSent = new Set<string>();
  /** The round in progress of the renewal loop. */
  #round: Promise<void> | undefined;
  #loop: Supervised | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  /** A nudge came while a round ran: the round after it starts at once (it may have read the leases before the release). */
  #wakeMissed = false;
  #stopped = false;
  /** Sitting out: not eligible at the last round (said once per spell). */
  #sittingOut = false;
  #members: string[] = [];
  /** Failed rounds, said at most once a minute (the database away fails one a second). */
  readonly #roundFailures: FailureSpell;

  constructor(opts: LeaseOptions) {
    super();
    this.#o = { ttlMs: 5000, renewEveryMs: 1000, ...opts };
    this.#roundFailures = new FailureSpell(opts.logger, `leases ${opts.group}`, "lease round failed; the next one runs on time");
  }

  /** This instance's name. */
  get instanceId(): string {
    return this.#o.instanceId;
  }

  /** The live members of every lease group at the last round (those that renewed a membership within a lease), this one included. */
  members(): string[] {
    return this.#members;
  }

  /** The lease's length (ms). */
  get ttlMs(): number {
    return this.#o.ttlMs;
  }

  // How long a lease counts as held after the renewal sent at a moment: a fifth of it is margin.
  get #validity(): number {
    return this.#o.ttlMs * 0.8;
  }

  /** The fence of `key` while this instance holds it (valid by its own clock, not being handed off). */
  fence(key: string): LeaseFence | undefined {
    const h = this.#held.get(key);
    if (!h || this.#releasing.has(key)) return undefined;
    if (performance.now() > h.validUntil) {
      this.#lose(key, "lease not renewed in time");
      return undefined;
    }
    return { key, epoch: h.epoch };
  }

  /** The keys held now (by the same rule as {@link fence}). */
  held(): string[] {
    return [...this.#held.keys()].filter((k) => this.fence(k) !== undefined);
  }

  /** Who holds `key` now by the database (a live lease, this instance's included), or undefined when nobody does. */
  async holderOf(key: string): Promise<string | undefined> {
    const row = await this.#o.db.leaseExecute<{ owner: string } | undefined>(
      "select owner from nerve_leases where lease_key = ? and owner is not null and lease_until > now()",
      [leaseName(this.#o.group, key)],
      "get",
    );
    return row?.owner ?? undefined;
  }

  /** Makes the lease rows, joins, takes what belongs here, then renews every `renewEveryMs`. */
  async start(): Promise<void> {
    const { db, group, keys } = this.#o;
    if (keys.length > 0) {
      await db.leaseExecute(
        `insert into nerve_leases (lease_key, epoch) values ${keys.map(() => "(?, 0)").join(",")} on conflict (lease_key) do nothing`,
        keys.map((k) => leaseName(group, k)),
        "run",
      );
    }
    await this.#alone();
    await this.tick();
    // Gives up lapsed leases even while the database cannot be reached (no round completes then).
    this.#watchdog = setInterval(() => this.held(), Math.min(250, this.#o.renewEveryMs));
    this.#watchdog.unref();
    this.#loop = supervise(this.#o.logger, `leases ${group}`, async (signal) => {
      while (!signal.aborted) {
        // One timer and one abort listener per wait, both gone when it ends: a wait woken early (a nudge
        // per hand-off by any instance) left its sleep's timer and listener behind, and a burst of them
        // piled up listeners on the loop's signal (MaxListenersExceededWarning).
        await new Promise<void>((resolve) => {
          if (this.#wakeMissed || signal.aborted) return resolve();
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener("abort", done);
            resolve();
          };
          const timer = setTimeout(done, this.#o.renewEveryMs);
          signal.addEventListener("abort", done, { once: true });
          this.#wake = done;
        });
        this.#wake = undefined;
        this.#wakeMissed = false;
        if (signal.aborted) break;
        // A failed round is reported and the next one runs on time: left to the supervisor's growing
        // back-off (reset only after 30 s without a failure), a few blips of the database would space
        // the rounds past a lease's validity and every lease would lapse at once. A round the database
        // does not answer must not hold the loop (the leases lapse by the watchdog anyway), nor start a
        // second one beside it: the next turn waits for the same round.
        const round = (this.#round ??= this.tick().finally(() => (this.#round = undefined)));
        try {
          await bounded(round, this.#o.ttlMs, "lease round");
          this.#roundFailures.succeeded();
        } catch (err) {
          this.stats.failedRounds++;
          this.#roundFailures.failed(err);
        }
      }
    });
  }

  /**
   * Refuses to start beside a live process of the same instance id. Each holds what the other holds
   * (a lease's owner is the id), so both would decide, reply, publish and fire timers for the same
   * partitions until their epochs parted them. A membership row of this id that is still live is either
   * a process of this id that died a moment ago (its row lapses within a lease) or one alive (it renews
   * it every round): the row is read again after one and a half rounds, and a renewal means the latter.
   */
  async #alone(): Promise<void> {
    const { db, group, instanceId: me, renewEveryMs } = this.#o;
    const read = async () =>
      (
        await db.leaseExecute<{ until_ms: string | number } | undefined>(
          "select (extract(epoch from seen_until) * 1000)::bigint as until_ms from nerve_instances where grp = ? and instance_id = ? and seen_until > now()",
          [group, me],
          "get",
        )
      )?.until_ms;
    const first = await read();
    if (first === undefined) return;
    this.#o.logger.info({ group, instance_id: me }, "a membership of this instance id is still live: checking that no other process renews it");
    await sleep(renewEveryMs * 1.5);
    const again = await read();
    if (again !== undefined && Number(again) > Number(first)) {
      throw new Error(`another live process uses NERVE_INSTANCE_ID=${me} (it renewed its ${group} membership just now): give every instance its own id`);
    }
  }

  /** Runs the next round now (another instance released a lease that may belong here). */
  wake(): void {
    if (this.#wake) this.#wake();
    else this.#wakeMissed = true;
  }

  /** One round: membership, renewals, acquisitions, hand-offs. */
  async tick(): Promise<void> {
    if (this.#stopped) return;
    const { db, instanceId: me, ttlMs, group, keys } = this.#o;
    const serving = this.#o.eligible?.() ?? true;
    const sent = performance.now();
    this.stats.rounds++;
    await db.leaseExecute(
      `insert into nerve_instances (grp, instance_id, seen_until, started_on, serving) values (?, ?, now() + ? * interval '1 millisecond', now(), ?)
       on conflict (grp, instance_id) do update set seen_until = excluded.seen_until, serving = excluded.serving`,
      [group, me, ttlMs, serving],
      "run",
    );
    // Every group's live members (an instance with some roles only is in some groups only), this group's for placement.
    const all = await db.leaseExecute<{ grp: string; instance_id: string; serving: boolean }[]>("select grp, instance_id, serving from nerve_instances where seen_until > now()", [], "all");
    const rows = all.filter((r) => r.grp === group);
    this.#members = [...new Set(all.map((r) => r.instance_id))].sort();
    // Members that died without leaving (kill -9, a pod gone) are forgotten after an hour.
    if (this.stats.rounds % 600 === 1) await db.leaseExecute("delete from nerve_instances where grp = ? and seen_until < now() - interval '1 hour'", [group], "run");
    const others = rows.filter((r) => r.instance_id !== me);
    if (!serving && others.some((r) => r.serving)) {
      // Nothing renewed, nothing taken: what is held lapses by the watchdog (lost, its work stopped) and in
      // the database for those that can serve; fencing keeps anything still in flight here from landing after them.
      if (!this.#sittingOut) this.#o.logger.warn({ group, held: this.#held.size }, "cannot serve what it leases (cut off from NATS) while others can: sitting out, its leases lapse for them");
      this.#sittingOut = true;
      return;
    }
    if (this.#sittingOut) this.#o.logger.info({ group }, "rejoining");
    this.#sittingOut = false;
    // Placement among those that can serve (this one included when it can).
    const able = [...others.filter((r) => r.serving).map((r) => r.instance_id), ...(serving ? [me] : [])];
    await this.#renew(sent);
    // None can (NATS down for every instance): each keeps what it holds, takes nothing, hands nothing off.
    // Placement over all members instead moved partitions back to whichever instance had noticed the
    // outage first and sat out, when the others noticed it too (seconds apart with a silent cut).
    if (able.length === 0) return;
    const live = [...new Set(able)];
    const wanted = new Set(keys.filter((k) => placeOf(`${group}/${k}`, live) === me));
    await this.#acquire(
      [...wanted].filter((k) => !this.#held.has(k)),
      sent,
    );
    for (const k of this.#held.keys()) if (!wanted.has(k) && !this.#releasing.has(k)) this.#handOff(k);
  }

  /**
   * Stops renewing and releases every lease (the caller has drained everything first), then leaves the
   * group. Leases `unreleased` picks are only given up: they lapse, so their next holder sees a crash.
   */
  async stop(unreleased: (key: string) => boolean = () => false): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    await this.#loop?.stop();
    const held = [...this.#held].map(([key, h]) => ({ key, h }));
    let released = new Set<string>();
    try {
      await bounded(
        (async () => {
          // One statement for all of them: the next owner waits for the last release (it nudges after).
          const releasing = held.filter(({ key }) => !unreleased(key));
          released = await this.#release(
            releasing.map(({ key, h }) => [key, h.epoch]),
            true,
          );
          await this.#o.db.leaseExecute("delete from nerve_instances where grp = ? and instance_id = ?", [this.#o.group, this.#o.instanceId], "run");
          this.#o.logger.info({ group: this.#o.group, released: released.size, held: held.length }, "leases released");
          const skipped = releasing.filter(({ key }) => !released.has(key));
          if (skipped.length > 0) {
            // Skipped: held by a commit's fence, or being released by a hand-off's statement right then. Read
            // `for key share`, which waits for a release's lock but not for a commit's fence: those still ours lapse.
            const rows = await this.#o.db.leaseExecute<{ lease_key: string }[]>(
              `select lease_key from nerve_leases where owner = ? and (lease_key, epoch) in (${skipped.map(() => "(?, ?)").join(",")}) for key share`,
              [this.#o.instanceId, ...skipped.flatMap(({ key, h }) => [leaseName(this.#o.group, key), h.epoch])],
              "all",
            );
            const lapsing = rows.map((r) => r.lease_key.slice(this.#o.group.length + 1));
            if (lapsing.length > 0) {
              this.#o.logger.warn({ group: this.#o.group, keys: lapsing }, "leases a commit still in flight holds are left to lapse: their next holder takes them once that commit ended");
            }
          }
        })(),
        this.#o.ttlMs,
        "releasing leases",
      );
    } catch (err) {
      reportFailure(this.#o.logger, `leases ${this.#o.group}`, err, "releasing leases at shutdown failed; they lapse by themselves");
    }
    // Those not released here lapse (or were released by a hand-off, which counted them): not counted as released.
    for (const { key } of held) this.#forget(key, released.has(key) ? "released" : "lost");
  }

  async #renew(sent: number): Promise<void> {
    const held = [...this.#held];
    if (held.length === 0) return;
    const { group } = this.#o;
    const rows = await this.#o.db.leaseExecute<{ lease_key: string }[]>(
      `update nerve_leases set lease_until = now() + ? * interval '1 millisecond'
       where owner = ? and (lease_key, epoch) in (${held.map(() => "(?, ?)").join(",")}) returning lease_key`,
      [this.#o.ttlMs, this.#o.instanceId, ...held.flatMap(([k, h]) => [leaseName(group, k), h.epoch])],
      "all",
    );
    const renewed = new Set(rows.map((r) => r.lease_key));
    for (const [k, h] of held) {
      // Released (a hand-off) or lost while this renewal was on its way: its end is said where it happened.
      if (this.#held.get(k) !== h) continue;
      if (renewed.has(leaseName(group, k))) h.validUntil = sent + this.#validity;
      // Its hand-off's release was sent: it may have landed before this renewal (not renewed: owner null),
      // and the release's answer tells released from taken over. Was: "lease lost: lease taken over" for a
      // plain release. Before the release is sent (the drain running), not renewed means taken over.
      else if (!this.#releaseSent.has(k)) this.#lose(k, "lease taken over");
    }
  }

  async #acquire(keys: string[], sent: number): Promise<void> {
    if (keys.length === 0) return;
    const { group } = this.#o;
    // A free lease, a lapsed one, or our own (lost by our clock, not yet by the database's): a new epoch.
    // `graceful`: the last holder released it (owner null), so nothing it did can still be in flight.
    // Only those rows are locked, and one locked elsewhere is skipped, taken at a later round: a commit of
    // its former owner still holds its fence (or a renewal or another acquisition is at it). Waiting for it
    // held this round — and so this instance's renewals — up for as long, while the rows locked already held
    // up their holders' renewals and commits: one long fenced transaction cost every instance its leases.
    const free = (t: string) => `(${t}owner is null or ${t}owner = ? or ${t}lease_until is null or ${t}lease_until < now())`;
    const rows = await this.#o.db.leaseExecute<{ lease_key: string; epoch: number | string; graceful: boolean }[]>(
      `update nerve_leases l set owner = ?, epoch = l.epoch + 1, lease_until = now() + ? * interval '1 millisecond'
       from (select lease_key, owner is null as graceful from nerve_leases where lease_key in (${keys.map(() => "?").join(",")}) and ${free("")} for update skip locked) prev
       where l.lease_key = prev.lease_key and ${free("l.")}
       returning l.lease_key, l.epoch, prev.graceful`,
      [this.#o.instanceId, this.#o.ttlMs, ...keys.map((k) => leaseName(group, k)), this.#o.instanceId, this.#o.instanceId],
      "all",
    );
    const acquired = rows.map((r) => ({ key: r.lease_key.slice(group.length + 1), epoch: Number(r.epoch), graceful: Boolean(r.graceful) }));
    // One line per round: after an outage every lease comes back at once (74 lines each way in an 8 s cut).
    if (acquired.length === 1) this.#o.logger.info({ group, ...acquired[0] }, "lease acquired");
    else if (acquired.length > 1) this.#o.logger.info({ group, count: acquired.length, leases: acquired }, "leases acquired");
    for (const { key, epoch, graceful } of acquired) {
      this.#held.set(key, { epoch, validUntil: sent + this.#validity });
      this.stats.acquired++;
      this.emit("acquired", key, epoch, graceful);
    }
  }

  // Graceful: no new work, drain, release, nudge. Renewals go on meanwhile, so the lease cannot lapse.
  #handOff(key: string): void {
    this.#releasing.add(key);
    this.#o.logger.info({ group: this.#o.group, key }, "handing lease off");
    watch(
      this.#o.logger,
      "lease hand-off",
      (async () => {
        try {
          const drained = await drainedWithin(this.#o.drain?.(key), this.#o.drainTimeoutMs ?? 60_000);
          if (!drained) {
            this.#lose(key, "its hand-off's drain did not end in time: left to lapse, its next holder takes it as from a crash");
            return;
          }
          const h = this.#held.get(key);
          if (h && !this.#stopped) {
            // Drained: its commits have ended, so the release waits for no fence (at most for a renewal's statement).
            this.#releaseSent.add(key);
            if (!(await this.#release([[key, h.epoch]], false)).has(key)) {
              // Not ours under that epoch any more: taken over during the hand-off (its renewals failed, or
              // the database's clock ran ahead). The renewals skip a lease being handed off, so it is said here.
              this.#lose(key, "taken over during its hand-off");
              return;
            }
            this.#o.logger.info({ group: this.#o.group, key }, "lease released");
            this.#forget(key, "released");
            this.#o.released?.(key);
          }
        } finally {
          this.#releasing.delete(key);
          this.#releaseSent.delete(key);
        }
      })(),
    );
  }

  /**
   * Releases leases still ours under those epochs (owner null: the next holder knows nothing is in flight)
   * and answers those it released. With `skipLocked` (at shutdown, the renewals stopped) a lease row a
   * commit still holds under its fence (`for key share`: a commit left running by a stop that ran out of
   * time, waiting for a lock) is skipped, not waited for: it lapses, and its next holder's acquisition waits
   * for that commit's end all the same. Waiting failed the one statement of them all after the leases'
   * lock_timeout, and every lease lapsed instead of one. (A hand-off waits: a renewal's statement, on the
   * other lease connection, may lock the row for a moment.)
   */
  async #release(leases: [key: string, epoch: number][], skipLocked: boolean): Promise<Set<string>> {
    if (leases.length === 0) return new Set();
    const { group } = this.#o;
    const rows = await this.#o.db.leaseExecute<{ lease_key: string }[]>(
      `update nerve_leases l set owner = null, lease_until = now()
       from (select lease_key from nerve_leases where owner = ? and (lease_key, epoch) in (${leases.map(() => "(?, ?)").join(",")}) for update${skipLocked ? " skip locked" : ""}) r
       where l.lease_key = r.lease_key returning l.lease_key`,
      [this.#o.instanceId, ...leases.flatMap(([k, epoch]) => [leaseName(group, k), epoch])],
      "all",
    );
    return new Set(rows.map((r) => r.lease_key.slice(group.length + 1)));
  }

  #lose(key: string, why: string): void {
    this.#sayLost(key, why);
    this.stats.lost++;
    this.#forget(key, "lost");
  }

  /** Leases lost in this turn of the event loop, by why: said in one line (every lease lapses at once in an outage). */
  readonly #lostUnsaid = new Map<string, string[]>();

  #sayLost(key: string, why: string): void {
    if (this.#lostUnsaid.size === 0) {
      setImmediate(() => {
        for (const [reason, keys] of this.#lostUnsaid) {
          if (keys.length === 1) this.#o.logger.warn({ group: this.#o.group, key: keys[0], why: reason }, "lease lost");
          else this.#o.logger.warn({ group: this.#o.group, count: keys.length, keys, why: reason }, "leases lost");
        }
        this.#lostUnsaid.clear();
      });
    }
    const keys = this.#lostUnsaid.get(why);
    if (keys) keys.push(key);
    else this.#lostUnsaid.set(why, [key]);
  }

  #forget(key: string, how: "lost" | "released"): void {
    if (!this.#held.delete(key)) return;
    if (how === "released") this.stats.released++;
    this.emit("lost", key);
  }
}

/** Whether `drain` settled within `ms` (its failure rejects as before; a late one is ignored). */
async function drainedWithin(drain: Promise<void> | undefined, ms: number): Promise<boolean> {
  if (!drain) return true;
  let timer: NodeJS.Timeout | undefined;
  drain.catch(() => undefined);
  try {
    return await Promise.race([drain.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  } finally {
    clearTimeout(timer);
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
