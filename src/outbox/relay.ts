/** The outbox relay: publishes committed events to JetStream exactly once, in per-aggregate order. */
import { partitionClause, type OutboxRow } from "../persistence/index.js";
import { FailureSpell } from "../supervision/index.js";
import { PARTITIONS } from "../cluster/partition.js";
import { HeldPartitions, partitionOfRow } from "./held-partitions.js";
import { RelayHolds, aggregateKey, jetStreamCode, outcomeUnknown, refusesRow, streamOfType, type FailureStage, type HoldReport } from "./holds.js";
import { publishBatch, type BatchContext } from "./publish-batch.js";
import { RoomWaiters } from "./room-waiters.js";
import { MEMORY_BYTES_LIMIT, RELEASE_WAIT_MS, RESCAN_MS, STALLED_MS, type RelayOptions, type RelayStats } from "./relay-options.js";

/** Most aggregates whose lookup the relay remembers until a read comes through (see OutboxRelay's #checked). */
const CHECKED_LIMIT = 200_000;


/**
 * Publishes committed outbox rows in commit order with `Nats-Msg-Id` = event_id.
 * Publishes of different aggregates overlap (up to `window`); one aggregate has at most one publish in
 * flight, so a failed publish can never be overtaken by a later version of the same aggregate.
 *
 * Two sources, one order. At start, after any failure, and whenever memory overflowed, the relay *scans*:
 * it reads the table in `seq` order until a read comes back short. Then it goes *live*: the writer hands it
 * each transaction's rows at commit (`offer`) and it publishes them from memory, without reading the table.
 * Rows offered during the scans are kept only if their `seq` is above everything the scans saw or the
 * relay published of their partition: within a partition `seq` grows in commit order (one writer: the
 * partition's owner), so those and only those were committed after the last read. Live, it still looks
 * in the table every `rescanMs` for a row committed without being handed over (a commit whose answer was
 * lost), and reads the table with the stream check when it finds one. After a failure, or a
 * crash, it resumes from what is unmarked; JetStream drops the repeats by their msg id, and the first
 * pass asks the stream about each aggregate's first row.
 *
 * Several instances: the relay handles only the partitions its ownership holds. It reads only theirs,
 * checks the fence right before every publish (a row of a partition no longer held stays in the table,
 * with its aggregate's later rows), forgets a lost partition's rows in memory, and reads the table again
 * when it acquires one, checking the first rows against the stream as after a crash: the former owner's
 * last publish may have landed. The next owner thus resumes each aggregate where the last left off.
 *
 * A failure stops only what it concerns (holds.ts): a stream that cannot be asked or published to holds
 * back its aggregate type, a row the stream refuses holds back its aggregate; their rows stay in the table,
 * left out of every read, and each hold is retried after its own back-off (a held stream once it answers a
 * probe; its rows are then looked up in the stream before they go out, until a read of the table has come
 * through them). Everything else goes on publishing, live or from the table.
 */
export class OutboxRelay {
  readonly #o: Required<Omit<RelayOptions, "deleter" | "ownership" | "publishAck">> & Pick<RelayOptions, "deleter">;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #pendingWake = false;
  /** A wake queued for the end of the turn ({@link #wakeAfterTurn}). */
  #wakeQueued = false;
  /**
   * After a start (and once rows were found never handed over), any aggregate's rows may be stored in
   * JetStream already (acknowledged, their delete not committed at a crash): every aggregate is looked
   * up (see {@link #checked}) until a read of the table comes through.
   */
  #verifyAll = true;
  /**
   * The aggregates looked up in the stream since the checks that ask for it began, and whether every row
   * of theirs that lookup saw was stored. An aggregate's rows are published one at a time, in order, so
   * the rows a crash, a former owner or an unanswered publish left stored are the lowest of its rows:
   * one lookup finding a row missing clears the rest (false: not looked up again); all found stored, its
   * next rows are looked up too. (It used to be the first batch after a start, whole: rows stored above
   * it — behind a refused row's aggregate at the bottom of the table, say — went out twice once the
   * duplicate window had passed.) Emptied when a read comes through.
   */
  readonly #checked = new Map<string, boolean>();
  /** Partitions acquired since the relay last went live: their first rows may be stored already (by their former owner). */
  readonly #verifyParts = new Uint8Array(PARTITIONS);
  /** A partition became publishable, or a hold ended, since the current scan began: read again before going live. */
  #rescan = false;
  /** What failures hold back now. */
  readonly #holds = new RelayHolds();
  /**
   * Aggregate types whose stream failed since the relay last read the table through: their rows may be
   * stored already (a publish whose ack was lost, a lookup that never ran), so each queue of theirs is
   * looked up in the stream before it goes out — in every batch until a read comes through them all.
   */
  readonly #verifyTypes = new Set<string>();
  /** Rows older than the partition column got theirs (once, before the first read of some partitions only). */
  #filled = false;
  readonly #held: HeldPartitions;
  /** Live: the table holds nothing unpublished beyond what memory holds. */
  #live = false;
  /** When the last scan began (performance.now()): a live relay reads the table again every `rescanMs`. */
  #scannedAt = 0;
  #memory: OutboxRow[] = [];
  /** The bytes of the bodies memory holds: bounded as well as the rows (50,000 events of 40 KB are 2 GB). */
  #memoryBytes = 0;
  /** Memory dropped rows since the current scan began, so it cannot take over from it. */
  #memoryLost = false;
  /**
   * Per partition, the highest seq published (or found stored) so far. Per partition because only
   * there does seq follow commit order once several instances write (one writer per partition).
   */
  readonly #highWater = new Float64Array(PARTITIONS);
  /**
   * Per partition, the highest seq handed over at commit since the relay last went live. A row of the
   * partition below it that the table holds and memory does not was never handed over: within a
   * partition seq grows in commit order, and commits are handed over in that order.
   */
  readonly #handed = new Float64Array(PARTITIONS);
  /** The seqs the last look in the table found neither in memory nor handed over yet (perhaps on their way). */
  #unhanded = new Set<number>();
  /** Per partition, publishes awaiting their ack (what a hand-off waits for). */
  readonly #inflight = new Int32Array(PARTITIONS);
  /** Rows of the pass in progress not yet acknowledged or failed. */
  #unacked = 0;
  /** When the relay last made progress: an ack, or rows arriving while it had nothing (performance.now()). */
  #progressAt = 0;
  /** Who waits for the backlog to shrink (the writer's admission). */
  readonly #roomWaiters = new RoomWaiters();
  readonly stats: RelayStats = { published: 0, duplicates: 0, failures: 0, verified: 0, gaps: 0, lateScans: 0, scans: 0, livePasses: 0, dropped: 0, overflows: 0 };
  /** What each batch reports back to, made once. */
  readonly #batch: BatchContext;
  /** Failed passes (the database away fails each), said at most once a minute. */
  readonly #passFailures: FailureSpell;

  constructor(opts: RelayOptions) {
    const { ownership, publishAck, ...rest } = opts;
    this.#o = { batchSize: 1000, pollMs: 1000, deleter: undefined, memoryLimit: 50_000, memoryBytesLimit: MEMORY_BYTES_LIMIT, rescanMs: RESCAN_MS, releaseWaitMs: RELEASE_WAIT_MS, ...rest };
    this.#passFailures = new FailureSpell(this.#o.logger, "outbox relay", "outbox relay pass failed");
    this.#held = new HeldPartitions(ownership, {
      gained: (p) => {
        // Its former owner (or this instance, before a pause) may have left rows only the table has,
        // and stored rows it had not deleted: each of its aggregates is looked up in the stream again.
        this.#verifyParts[p] = 1;
        // (All forgotten, not the partition's: a rebalance gains many, and each walk was the whole map.)
        this.#checked.clear();
        this.#holds.dropPartition(p);
        this.#rescan = true;
        this.#live = false;
        this.#checkRoom();
        this.wake();
      },
      lost: (p) => {
        this.#keep((r) => partitionOfRow(r) !== p);
        // Its refused rows are the next owner's to try; should it come back, they are looked up in the stream first.
        this.#holds.dropPartition(p);
        this.#checkRoom();
      },
    });
    this.#batch = {
      js: opts.js,
      jsm: opts.jsm,
      window: opts.window,
      publishAck,
      mayPublish: (p) => this.#held.mayPublish(p),
      verifying: () => this.#verifyAll || this.#verifyTypes.size > 0 || this.#verifyParts.includes(1),
      mustVerify: (row) =>
        (this.#verifyAll || this.#verifyParts[partitionOfRow(row)] === 1 || this.#verifyTypes.has(row.aggregate_type)) &&
        this.#checked.get(aggregateKey(row.aggregate_type, row.aggregate_id)) !== false,
      checked: (row, allStored) => {
        // Bounded: forgotten, an aggregate is only looked up once more.
        if (this.#checked.size >= CHECKED_LIMIT) this.#checked.clear();
        this.#checked.set(aggregateKey(row.aggregate_type, row.aggregate_id), allStored);
      },
      holds: (row) => this.#holds.holds(row),
      failed: (row, err, stage) => this.#failed(row, err, stage),
      skipped: (n) => {
        this.#unacked -= n;
      },
      dropped: (p, n) => {
        this.stats.dropped += n;
        this.#unacked -= n;
        // Taken back later, the partition is read from the table again before any of its rows goes out.
        this.#held.suspend(p);
      },
      sent: (p) => void this.#inflight[p]!++,
      stored: (row, p, how) => {
        this.#raise(p, row.seq);
        if (how === "verified") return void this.stats.verified++;
        this.#progressAt = performance.now();
        const proven = this.#holds.acknowledged(row);
        if (proven) this.#o.logger.info({ stream: streamOfType(row.aggregate_type), aggregate_type: row.aggregate_type, aggregate_id: row.aggregate_id, event_id: row.event_id, ...proven }, "the outbox relay publishes again what a failure held back");
        if (how === "duplicate") this.stats.duplicates++;
        else this.stats.published++;
      },
      missing: (row, _p, last) => {
        this.stats.gaps++;
        this.#o.logger.error(
          { event_id: row.event_id, aggregate_type: row.aggregate_type, aggregate_id: row.aggregate_id, aggregate_version: Number(row.aggregate_version), stream_version: last },
          "an outbox row is missing from the stream below its aggregate's last version: published now, out of order",
        );
      },
      settled: (p) => {
        this.#inflight[p]!--;
        this.#unacked--;
        this.#checkRoom();
      },
    };
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
    return this.#roomWaiters.wait(limit, maxWaitMs);
  }

  #checkRoom(): void {
    if (!this.#roomWaiters.empty) this.#roomWaiters.check(this.backlog);
  }

  /** Rows the writer has just committed, in commit order. */
  offer(rows: readonly OutboxRow[]): void {
    if (!this.#running || rows.length === 0) return;
    if (this.#memory.length + rows.length > this.#o.memoryLimit || this.#memoryBytes + bodyBytes(rows) > this.#o.memoryBytesLimit) {
      // Falling behind: the table has them all; read it again.
      this.stats.overflows++;
      this.#memory = [];
      this.#memoryBytes = 0;
      this.#memoryLost = true;
      this.#live = false;
      this.#checkRoom();
    } else {
      if (this.backlog === 0) this.#progressAt = performance.now();
      // A commit can race the loss of its partition; its rows then stay in the table for the next owner.
      for (const r of rows) {
        const p = partitionOfRow(r);
        if (!this.#held.has(p)) continue;
        // Held back by a failure: the table keeps it, and a read once the hold ends finds it.
        if (this.#holds.any && this.#holds.holds(r)) continue;
        this.#memory.push(r);
        this.#memoryBytes += r.body.length;
        if (Number(r.seq) > this.#handed[p]!) this.#handed[p] = Number(r.seq);
      }
    }
    this.#wakeAfterTurn();
  }

  /**
   * Wakes the relay once this turn of the event loop is over (setImmediate) rather than at once. Offered
   * rows come from a commit whose commands are answered in the microtasks of the same turn: woken at once,
   * the relay's pass ran first, its JavaScript and its own socket write ahead of every reply (one at a
   * time, 0.11–0.17 ms of a command's p50 in alternating pairs; `npm run bench:lone-trace` shows the legs, stop 57). A pass in progress sees #pendingWake and goes
   * round again without sleeping, as before; under load the relay is seldom asleep, so this changes nothing there.
   */
  #wakeAfterTurn(): void {
    this.#pendingWake = true;
    if (this.#wakeQueued || !this.#wake) return;
    this.#wakeQueued = true;
    setImmediate(this.#queuedWake);
  }

  /** What {@link #wakeAfterTurn} runs at the turn's end (made once, not a closure per commit). */
  readonly #queuedWake = (): void => {
    this.#wakeQueued = false;
    this.#wake?.();
  };

  /** Starts the publishing loop. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#live = false;
    this.#verifyAll = true;
    this.#checked.clear();
    this.#generation++;
    this.#probing.clear();
    this.#memory = [];
    this.#memoryBytes = 0;
    this.#holds.clear();
    this.#verifyTypes.clear();
    this.#held.attach();
    this.#loop = this.#run();
  }

  /** Tells the relay that new rows were committed. */
  wake(): void {
    this.#pendingWake = true;
    this.#wake?.();
  }

  /**
   * Waits until the outbox holds no row of the partitions held now (every row, without an ownership),
   * or the deadline passes; returns whether it emptied. For shutdown: under load other partitions'
   * rows keep coming, so a hand-off of one partition waits with {@link flushPartition} instead.
   */
  flush(timeoutMs: number): Promise<boolean> {
    return this.#until(async () => (await this.#o.repo.outboxSize(this.#held.readable())) === 0, timeoutMs);
  }

  /**
   * The relay's part of a graceful hand-off of partition `p`: resolves true once none of its publishes
   * is in flight and, while `p` is still held, none of its rows is left in the table. Once the partition
   * is being handed off (its fence gone) the relay publishes no more of it: what is left stays in the
   * table, and the next owner's relay, which reads the table when it acquires `p`, publishes it in order.
   */
  async flushPartition(p: number, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    const done = await this.#until(async () => this.#inflight[p] === 0 && (!this.#held.mayPublish(p) || (await this.#o.repo.outboxSize([p])) === 0), timeoutMs);
    // Its acknowledged rows deleted, the next owner need not publish them again (harmless: the stream drops repeats).
    if (done) await this.#released(until - Date.now());
    return done;
  }

  /** Polls `done` (waking the relay between polls) until it holds or `timeoutMs` passes; returns whether it held. */
  async #until(done: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (await done()) return true;
      this.wake();
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  /** Stops after the current pass. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#held.detach();
    this.#checkRoom();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let backoff = 0;
    while (this.#running) {
      this.#pendingWake = false;
      let full = false;
      this.#held.recheck();
      if (this.#holds.any) this.#retryHolds();
      // While a stream is held back its rows lie in the table, and each look reads past them: less often then.
      if (this.#live && performance.now() - this.#scannedAt >= this.#o.rescanMs * (this.#holds.types > 0 ? 6 : 1)) await this.#lookForLateRows();
      try {
        const ok = this.#live ? await this.#livePass() : await this.#scanPass();
        this.#checkRoom();
        full = ok.full;
        backoff = ok.published ? 0 : Math.min(2000, backoff ? backoff * 2 : 50);
        this.#passFailures.succeeded();
      } catch (err) {
        this.#passFailures.failed(err);
        this.#live = false;
        this.#checkRoom();
        backoff = Math.min(2000, backoff ? backoff * 2 : 50);
      }
      if (!this.#running) break;
      if (backoff > 0) await this.#sleep(backoff, false);
      else if (!full && !this.#pendingWake) await this.#sleep(Math.min(this.#o.pollMs, this.#holds.nextRetryIn(performance.now()) ?? Infinity), true);
    }
  }

  /**
   * Live, every `rescanMs`, between passes (nothing is in flight then): does the table hold a row memory
   * does not, one committed without being handed over (a commit whose answer was lost)? Published rows are
   * gone from the table once the deleter has deleted what it was released (awaited first; when that takes
   * too long the relay does not look this time). A row that is neither there nor in memory may still be on
   * its way: the SQLite write worker commits, and the main thread hears of it only after a message hop. So
   * such a row counts as never handed over only when a later commit of its partition was handed over
   * already (seq grows in commit order within a partition, and commits are handed over in that order), or
   * when the look before this one, `rescanMs` earlier, found it so too. Then the relay reads the table with
   * the stream check (a verified scan: what the stream lacks goes out — counted as a gap when a later
   * version is there already —, what it holds is marked). One short query otherwise; a failure (the database
   * out of reach) leaves the relay live, publishing from memory, and it looks again next time.
   */
  async #lookForLateRows(): Promise<void> {
    this.#scannedAt = performance.now();
    try {
      if (!(await this.#released(this.#o.releaseWaitMs))) return;
      const rows = await this.#o.repo.pendingOutbox(this.#o.batchSize, this.#held.readable(), this.#holds.exclusion());
      if (!this.#live) return;
      const inMemory = new Set(this.#memory.map((r) => Number(r.seq)));
      const before = this.#unhanded;
      this.#unhanded = new Set();
      const late: OutboxRow[] = [];
      for (const r of rows) {
        const seq = Number(r.seq);
        const p = partitionOfRow(r);
        if (inMemory.has(seq) || !this.#held.mayPublish(p) || this.#holds.holds(r)) continue;
        if (seq < this.#handed[p]! || before.has(seq)) late.push(r);
        else this.#unhanded.add(seq);
      }
      if (late.length === 0) return;
      this.#o.logger.warn({ rows: late.length, first_seq: Number(late[0]!.seq) }, "outbox rows the relay was never handed: reading the table with the stream check");
      this.stats.lateScans++;
      this.#live = false;
      this.#verifyAll = true;
      this.#checked.clear();
      this.#checkRoom();
    } catch (err) {
      this.#o.logger.debug({ err }, "the relay's look for rows it was never handed failed; it stays live");
    }
  }

  /** One pass over the table; goes live when the table is caught up and memory holds the rest. */
  async #scanPass(): Promise<{ published: boolean; full: boolean }> {
    this.stats.scans++;
    this.#scannedAt = performance.now();
    // Rows published in the last pass must be gone before reading, or they would be read again. A
    // database that cannot delete them for that long (its writes stalled, its disk full) is read anyway,
    // with the stream check: what is read again is found stored and marked, not published again past
    // the duplicate window every few seconds (as it was: nothing looked those rows up).
    if (!(await this.#released(this.#o.releaseWaitMs))) {
      this.#verifyAll = true;
      this.#checked.clear();
    }
    this.#memoryLost = false;
    this.#rescan = false;
    const partitions = this.#held.readable();
    // A read of some partitions only would miss rows older than the column: they get theirs first.
    if (!this.#filled && partitionClause(partitions) !== undefined) {
      await this.#o.repo.fillPartitions("nerve_outbox");
      this.#filled = true;
    }
    // Held rows are left out by the query: however many lie at the bottom of the table, a read returns rows that can go out.
    const rows = await this.#o.repo.pendingOutbox(this.#o.batchSize, partitions, this.#holds.exclusion());
    const published = rows.length === 0 || (await this.#publish(rows));
    const full = rows.length >= this.#o.batchSize;
    if (published && !full && !this.#memoryLost && !this.#rescan) {
      // Within a partition seq follows commit order, so memory's rows above what this read (or a
      // publish) covered of their partition were committed after the read: those, and only those, stay.
      const cut = this.#highWater.slice();
      for (const r of rows) {
        const p = partitionOfRow(r);
        if (Number(r.seq) > cut[p]!) cut[p] = Number(r.seq);
      }
      this.#keep((r) => r.seq > cut[partitionOfRow(r)]!);
      this.#handed.fill(0);
      for (const r of this.#memory) this.#handed[partitionOfRow(r)] = Number(r.seq);
      this.#unhanded.clear();
      // Read through: every row of a stream that failed and is not held back (again) now went out or was
      // found stored. A held stream's rows were left out of the reads: a check still due for them (after a
      // start, a partition acquired) is kept for when its hold ends.
      for (const t of this.#verifyTypes) if (!this.#holds.typeHeld(t)) this.#verifyTypes.delete(t);
      if (this.#verifyAll || this.#verifyParts.includes(1)) for (const t of this.#holds.heldTypes()) this.#verifyTypes.add(t);
      this.#verifyParts.fill(0);
      this.#verifyAll = false;
      this.#checked.clear();
      this.#live = true;
    }
    return { published, full: full || this.#rescan || (this.#live && this.#memory.length > 0) };
  }

  /** One pass over what the writer handed over; a failure sends the relay back to the table. */
  async #livePass(): Promise<{ published: boolean; full: boolean }> {
    if (this.#memory.length === 0) return { published: true, full: false };
    this.stats.livePasses++;
    const rows = this.#memory.splice(0, this.#o.batchSize);
    this.#memoryBytes -= bodyBytes(rows);
    const published = await this.#publish(rows);
    if (!published) {
      this.#live = false;
      this.#memory = [];
      this.#memoryBytes = 0;
    }
    return { published, full: published && this.#memory.length > 0 };
  }

  /** Keeps the rows of memory that `keep` takes. */
  #keep(keep: (r: OutboxRow) => boolean): void {
    this.#memory = this.#memory.filter(keep);
    this.#memoryBytes = bodyBytes(this.#memory);
  }

  /** Waits until the deleter has deleted the rows released to it so far, at most `ms`; returns whether it has (true without a deleter). */
  async #released(ms: number): Promise<boolean> {
    if (!this.#o.deleter) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([this.#o.deleter.released().then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), Math.max(0, ms))))]);
    clearTimeout(timer);
    return done;
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

  #raise(p: number, seq: number | string): void {
    if (Number(seq) > this.#highWater[p]!) this.#highWater[p] = Number(seq);
  }

  /**
   * Publishes one batch; marks the acknowledged rows. A failed lookup or publish holds back what it concerns
   * ({@link #failed}) and the rest goes on, so the batch as a whole does not fail: returns whether it
   * published or found stored anything, or had nothing that could go out (false: every row was held back).
   */
  async #publish(rows: OutboxRow[]): Promise<boolean> {
    this.#unacked = rows.length;
    const { acked, failures } = await publishBatch(rows, this.#batch, false);
    this.#unacked = 0;
    if (acked.length > 0) {
      if (this.#o.deleter) this.#o.deleter.release(acked);
      else await this.#o.repo.markPublished(acked);
    }
    return acked.length > 0 || failures === 0;
  }

  /**
   * A lookup or publish of `row` failed. A publish its stream refuses for the row itself (too large, …)
   * holds back its aggregate: its later rows wait behind it in the table. Anything else holds back its
   * stream (its aggregate type), whose rows are looked up in the stream before they go out again. Rows in
   * memory that the hold covers are let go: the table has them.
   */
  #failed(row: OutboxRow, err: unknown, stage: "lookup" | "publish"): void {
    this.stats.failures++;
    const now = performance.now();
    const code = jetStreamCode(err);
    if (stage === "publish" && refusesRow(err)) {
      // A refusal that lands after its partition went (a hand-off during the publish): the row is its next
      // owner's to try, and a hold made here would outlive the partition's (dropped when it went).
      const p = partitionOfRow(row);
      const r = this.#held.has(p) ? this.#holds.holdAggregate(row, p, now) : undefined;
      if (r) {
        const what = { event_id: row.event_id, subject: row.subject, aggregate_type: row.aggregate_type, aggregate_id: row.aggregate_id, aggregate_version: Number(row.aggregate_version), seq: Number(row.seq), code, err: String(err), retry_in_ms: r.retryInMs };
        if (r.type) this.#o.logger.error({ ...what, stream: streamOfType(row.aggregate_type), held_aggregates: this.#holds.aggregates }, "JetStream refuses the rows of many aggregates of this stream: all of its events wait in the outbox, retried with back-off (the other streams' go on)");
        else this.#o.logger.error(what, r.fresh ? "JetStream refused an outbox row: its aggregate's events wait behind it in the outbox, in order, retried with back-off (every other aggregate's go on)" : "JetStream refused an outbox row again; its aggregate's events still wait behind it");
      }
    } else {
      // A lookup that failed checked nothing; a publish without the stream's answer may have been stored.
      // A stream that answered refusing every message (full, short of resources) stored nothing, and is
      // tried on the slower back-off: it answers its probes all along.
      const unknown = stage === "lookup" || outcomeUnknown(err);
      // Only this row can have been stored unbeknown (each publish in flight fails on its own): its
      // aggregate is looked up again.
      if (unknown) {
        this.#verifyTypes.add(row.aggregate_type);
        if (stage === "publish") this.#checked.delete(aggregateKey(row.aggregate_type, row.aggregate_id));
      }
      const r = this.#holds.holdType(row.aggregate_type, now, !unknown);
      if (r) this.#reportStream(row.aggregate_type, stage, err, r);
    }
    if (this.#memory.length > 0) this.#keep((m) => !this.#holds.holds(m));
    this.#checkRoom();
  }

  #reportStream(type: string, stage: FailureStage, err: unknown, r: HoldReport): void {
    this.#o.logger.warn(
      { stream: streamOfType(type), aggregate_type: type, stage, code: jetStreamCode(err), err: String(err), retry_in_ms: r.retryInMs },
      r.fresh ? "a stream failed: its events wait in the outbox, probed with back-off (the other streams' go on)" : "a stream still fails: its events wait in the outbox",
    );
  }

  /**
   * Ends the holds whose back-off is over: a held aggregate's rows are read from the table again and go
   * out (or are refused again); a held stream is asked for its info first, and released when it answers.
   * Either way the relay reads the table before it goes live again. The probes run beside the passes,
   * not in their way: one that waits for JetStream's API timeout (5 s: a stream without a leader) must
   * not stop the other streams meanwhile.
   */
  #retryHolds(): void {
    if (this.#holds.releaseDueAggregates(performance.now()) > 0) this.#reread();
    const generation = this.#generation;
    for (const { type, stream } of this.#holds.dueTypes(performance.now())) {
      if (this.#probing.has(type)) continue;
      this.#probing.add(type);
      // Not due while it is on its way (the loop would go round at once until it answers).
      this.#holds.probeSent(type);
      this.#o.jsm.streams
        .info(stream)
        .then(
          () => {
            // An answer to a relay stopped since (or started again) is not for it.
            if (!this.#running || generation !== this.#generation) return;
            this.#holds.releaseType(type);
            this.#reread();
            this.wake();
          },
          (err: unknown) => {
            if (!this.#running || generation !== this.#generation) return;
            this.stats.failures++;
            const r = this.#holds.probeFailed(type, performance.now());
            if (r) this.#reportStream(type, "probe", err, r);
            // The loop sleeps until then, not a whole poll.
            this.wake();
          },
        )
        .catch((err: unknown) => this.#o.logger.error({ err }, "the outbox relay's probe of a held stream failed unexpectedly"))
        .finally(() => {
          if (generation === this.#generation) this.#probing.delete(type);
        });
    }
  }

  /** Held streams whose probe is on its way. */
  readonly #probing = new Set<string>();
  /** Starts of the relay: a probe's answer counts only for the start that sent it. */
  #generation = 0;

  /** Rows only the table has may go out now: read it before going live again. */
  #reread(): void {
    this.#rescan = true;
    this.#live = false;
    this.#checkRoom();
  }

  /** Aggregate types and aggregates held back by a failure, for the metrics. */
  get held(): { streams: number; aggregates: number } {
    return { streams: this.#holds.types, aggregates: this.#holds.aggregates };
  }

  /** The streams held back by a failure, by name (for `nerve status`). */
  heldStreams(): string[] {
    return this.#holds.heldTypes().map(streamOfType).sort();
  }
}

/** The bytes of the rows' bodies (their events as published). */
function bodyBytes(rows: readonly OutboxRow[]): number {
  let n = 0;
  for (const r of rows) n += r.body.length;
  return n;
}
