/**
 * The SQLite write engine: a connection of its own to the service's file, which runs each group commit it
 * is sent as one transaction with statements prepared once (with the consumer batches queued beside it,
 * one transaction for all: see runTogether). better-sqlite3 runs each statement on the calling thread,
 * synchronously: no trip through libuv's thread pool and back per statement. It runs in the write worker's
 * thread (sqlite-write-thread.ts: nothing else of the service waits meanwhile) or, with
 * `NERVE_SQLITE_WRITER=inline`, on the main thread itself (sqlite-write-worker.ts's InlineEngine: no hop
 * between threads, but the event loop waits out each transaction and its fsync).
 *
 * It loads the driver MikroORM uses (better-sqlite3, from the same path: sqlite-lock.ts's
 * betterSqlite3Path): each driver links its own copy of SQLite, and two copies in one process corrupt a
 * database they share (POSIX locks are per process, so neither copy sees the other's;
 * sqlite.org/howtocorrupt.html §2.2.1). With better-sqlite3 here and node-sqlite3 on the main thread, a
 * main-thread read once missed a commit of this thread.
 */
import { StaleWriteError, writeStatements } from "./batch-statements.js";
import { runConsumerBatch } from "./consumer-batch.js";
import { ExtraKinds, fitsOneStatement, NEXT_SEQ_SQL, ONE_STATEMENT_SETUP, oneStatement, STALE_ABORT } from "./one-statement.js";
import { isBusy, openSqlite, preparedStatements, statementExec, writerPragmas } from "./sqlite-lock.js";
import { monotonicMs } from "../support/monotonic.js";
import { thisThreadHeap, type WorkerHeap } from "./worker-heap.js";
import type { WorkerReply, WorkerRequest, WorkerSetup } from "./sqlite-write-worker.js";

/**
 * Prepared statements kept (by SQL text), least recently used first out. Multi-row statements differ by
 * row count (up to 200 rows for each of the group commit's tables, 500 outbox deletes, 500 inbox rows),
 * so the texts seen over hours run to well over a thousand, each holding SQLite memory: with 2,000 kept
 * the soak's native memory still grew at minute 16 of 30. The common sizes stay prepared; a rare one is
 * prepared again, which costs less than its memory.
 */
const MAX_STATEMENTS = 256;

/** A message to the engine: a request, or a question. */
export type EngineMessage = WorkerRequest | { close: true } | { stats: true } | { heap: true };

/** How the engine talks to whoever sent it work: a worker thread's port, or the main thread itself (inline). */
export interface EngineHost {
  /** Sends a reply (or the answer to a question). */
  reply(m: WorkerReply | { stats: SharedStats } | { heap: WorkerHeap }): void;
  /** A message sent while a transaction ran, not yet delivered (the thread's receiveMessageOnPort); none inline. */
  pull(): EngineMessage | undefined;
  /**
   * Starts a drain: at once on the thread. Inline, `soon` (a group commit arrived: commands wait for it) once
   * the code now running is done (a microtask); otherwise (consumer batches only) at the end of this turn of
   * the event loop, so that they share the transaction of the group commit the turn's end brings, if any.
   */
  defer(drain: () => void, soon: boolean): void;
  /** The engine closed its connection after a close was asked. */
  closed(): void;
  /** Ends abruptly (a bug in the drain, or a test's exitBeforeCommit): the thread exits; inline, the host decides. */
  crash(err: unknown): void;
  /**
   * Inline only: how the engine waits for the write lock, and between transactions. On the main thread it
   * must never wait inside SQLite (busy_timeout): the connection holding the lock — the main one, in a
   * transaction that awaits something — could then never finish, and the whole process would stand still
   * until the timeout failed the group commit. So its connection gets no busy timeout, and a lock found
   * taken is asked for again after `sleep(ms)` (a timer: the event loop runs meanwhile), until the
   * setup's busy timeout has passed. `between` yields a turn of the event loop before each transaction
   * after the first of a drain: the answers of the one before may go on, in microtasks, to write on
   * another connection (synchronously, with its own busy timeout), which must not find this one's lock.
   */
  yielding?: { sleep(ms: number): Promise<void>; between(): Promise<void> };
}

/** Longest pause between two attempts at the write lock inline ({@link EngineHost.yielding}): it doubles from 1 ms to this. */
const LOCK_RETRY_MAX_MS = 16;


/** Transactions shared by several requests, the requests in them, and group commits written as one statement (SqliteWriteWorker.sharedTransactions). */
type SharedStats = { transactions: number; requests: number; oneStatement: number };

/** A running engine: give it each message sent. */
export interface WriteEngine {
  take(msg: EngineMessage): void;
  /** Closes the connection at once (a transaction open on it rolls back): the engine after a crash. */
  abort(): void;
}

/**
 * Opens the write connection and returns the engine that runs what it is sent on it, one transaction at a
 * time in the order sent (see the file's head). Throws when the file cannot be opened.
 */
export function startWriteEngine(setup: WorkerSetup, host: EngineHost): WriteEngine {
  // Inline, SQLite never waits for a lock: whenUnlocked does, off the event loop (EngineHost.yielding).
  const yielding = host.yielding;
  const busyTimeoutMs = yielding ? 0 : setup.busyTimeoutMs;
  const handle = openSqlite(setup.path, busyTimeoutMs);
  const plain = async (sql: string): Promise<void> => {
    handle.exec(sql);
  };
  // The main connection's pragmas: the same durability for a commit whichever connection makes it.
  for (const pragma of writerPragmas(setup.synchronous, busyTimeoutMs)) handle.exec(pragma);
  // As on the main connection: the database's checkpointer copies the WAL, never a commit of this thread.
  handle.exec("pragma wal_autocheckpoint = 0");
  handle.exec(`pragma journal_size_limit = ${Math.floor(setup.walSizeLimit)}`);
  // The TEMP view (in memory: writerPragmas' temp_store) through which a small group commit is one statement (one-statement.ts).
  handle.exec(ONE_STATEMENT_SETUP);

  // A statement that does not prepare fails its request like any database error.
  const statement = preparedStatements(handle, MAX_STATEMENTS);
  const exec = statementExec(statement);

  /**
   * Consumer batches that did not commit, by request id, until the batch sent after them on the same reader
   * (`after`) has been looked at: that one must not commit either. Bounded: a failed batch that no batch
   * follows (its reader stopped) stays only until 1,024 others have failed.
   */
  const failedBatches = new Set<number>();
  const FAILED_BATCHES_KEPT = 1_024;

  // Whether the batch a consumer batch follows did not commit: then it is not run either.
  function blocked(req: WorkerRequest): boolean {
    return "consumerBatch" in req && req.after !== undefined && failedBatches.has(req.after);
  }

  /**
   * The next outbox seq a one-statement group commit gives (one-statement.ts); undefined until read, and
   * again after any transaction that did not commit (whatever it had numbered is not in the table).
   */
  let nextSeq: number | undefined;

  /** The triggers this connection has made for the writes' further statements (one-statement.ts). */
  const extras = new ExtraKinds();

  // Makes the triggers the group commit's further statements need (once per SQL text); one that fails leaves its statement to the usual way.
  async function learnExtras(req: WorkerRequest): Promise<void> {
    if (!("writes" in req)) return;
    for (const { sql, trigger } of extras.triggersFor(req.writes)) await plain(trigger).catch(() => extras.forget(sql));
  }

  // A group commit small enough for one statement, which is then a transaction of its own (no begin, no commit).
  function alone(req: WorkerRequest): boolean {
    return "writes" in req && !req.exitBeforeCommit && fitsOneStatement(req.writes, req.published, extras);
  }

  /**
   * Runs `attempt` — what takes the write lock: a `begin immediate`, a lone statement — waiting for the lock
   * while another connection holds it: inside SQLite (busy_timeout) on the thread; inline, by trying again
   * after a timer until the busy timeout has passed (EngineHost.yielding). An attempt that finds the lock
   * taken has changed nothing.
   */
  async function whenUnlocked<T>(attempt: () => Promise<T>): Promise<T> {
    if (!yielding) return attempt();
    const deadline = monotonicMs() + setup.busyTimeoutMs;
    for (let wait = 1; ; wait = Math.min(wait * 2, LOCK_RETRY_MAX_MS)) {
      try {
        return await attempt();
      } catch (err) {
        if (!isBusy(err) || monotonicMs() + wait > deadline) throw err;
      }
      await yielding.sleep(wait);
    }
  }

  // `begin immediate` takes the write lock first, waiting (whenUnlocked) for another connection's own
  // writes; a deferred begin could fail at its first write once another connection had committed. (A
  // lone statement takes the write lock as it starts, and waits the same way.)
  async function run(req: WorkerRequest): Promise<WorkerReply> {
    if (blocked(req)) {
      failedBatches.delete((req as { after: number }).after);
      return failed(req, { name: "BatchBeforeFailed", message: `the batch before this one on its reader (request ${(req as { after: number }).after}) did not commit` });
    }
    await learnExtras(req);
    if (alone(req)) {
      try {
        return await whenUnlocked(() =>
          statementsOf(req).catch((err: unknown) => {
            nextSeq = undefined;
            throw err;
          }),
        );
      } catch (err) {
        return failed(req, err);
      }
    }
    try {
      await whenUnlocked(() => plain("begin immediate"));
      try {
        const reply = await statementsOf(req);
        if (req.exitBeforeCommit) {
          const err = new Error("exit before commit (a test's crash)");
          host.crash(err);
          throw err;
        }
        await plain("commit");
        return reply;
      } catch (err) {
        nextSeq = undefined;
        await plain("rollback").catch(() => undefined);
        throw err;
      }
    } catch (err) {
      return failed(req, err);
    }
  }

  // A request's statements, inside the caller's transaction (or, for a group commit that fits, as the one statement of its own).
  async function statementsOf(req: WorkerRequest): Promise<WorkerReply> {
    if ("consumerBatch" in req) return { id: req.id, handled: await runConsumerBatch(exec, req.consumerBatch) };
    // A group commit's outbox rows are numbered here, whichever way it is written; a failure forgets the count (run, runTogether).
    nextSeq ??= (statement(NEXT_SEQ_SQL).get() as { next: number }).next;
    if (fitsOneStatement(req.writes, req.published, extras)) {
      const one = oneStatement(req.writes, req.published, nextSeq, extras)!;
      try {
        await exec(one.sql, one.params, "run");
      } catch (err) {
        if ((err as Error).message?.includes(STALE_ABORT)) throw new StaleWriteError("stale snapshot write");
        throw err;
      }
      nextSeq += one.seqs.length;
      shared.oneStatement++;
      return { id: req.id, seqs: one.seqs };
    }
    // As one statement's are (batch-statements.ts, OwnNumbering).
    const numbered = { nextSeq };
    const seqs = await writeStatements(exec, req.writes, req.published, undefined, undefined, numbered);
    nextSeq = numbered.nextSeq;
    return { id: req.id, seqs };
  }

  function failed(req: WorkerRequest, err: unknown): WorkerReply {
    if ("consumerBatch" in req) {
      failedBatches.add(req.id);
      if (failedBatches.size > FAILED_BATCHES_KEPT) failedBatches.delete(failedBatches.values().next().value as number);
    }
    const e = err as { name?: string; message?: string; code?: string };
    return { id: req.id, error: { name: e.name ?? "Error", message: e.message ?? String(err), code: e.code, stale: err instanceof StaleWriteError } };
  }

  /**
   * Requests that queued up while a transaction ran share the next one: one begin, one commit and one fsync
   * for a group commit and the consumer batches beside it, instead of one each. They run in the order
   * sent, as they would one by one, and each sees the ones before it. When any of them fails, the shared
   * transaction is rolled back and each runs alone, so a failure stays its own request's (a stale write,
   * a taken e-mail) and the rest commit — but for a consumer batch that follows a failed one of its reader
   * (`after`), which fails too.
   */
  async function runTogether(reqs: WorkerRequest[]): Promise<WorkerReply[]> {
    if (reqs.length === 1 || reqs.some((r) => r.exitBeforeCommit || blocked(r))) return oneByOne(reqs);
    for (const r of reqs) await learnExtras(r);
    try {
      await whenUnlocked(() => plain("begin immediate"));
    } catch (err) {
      return reqs.map((r) => failed(r, err));
    }
    const replies: WorkerReply[] = [];
    try {
      for (const r of reqs) replies.push(await statementsOf(r));
      await plain("commit");
      shared.transactions++;
      shared.requests += reqs.length;
      return replies;
    } catch {
      nextSeq = undefined;
      await plain("rollback").catch(() => undefined);
    }
    return oneByOne(reqs);
  }

  // Each request in a transaction of its own, in order.
  async function oneByOne(reqs: WorkerRequest[]): Promise<WorkerReply[]> {
    const replies: WorkerReply[] = [];
    for (const r of reqs) replies.push(await run(r));
    return replies;
  }

  /** Transactions shared by several requests, the requests in them, and group commits written as one statement (SqliteWriteWorker.sharedTransactions). */
  const shared = { transactions: 0, requests: 0, oneStatement: 0 };

  const queue: WorkerRequest[] = [];
  let draining: Promise<void> | undefined;
  /** A drain asked of the host and not yet started: `soon` or at the turn's end ({@link EngineHost.defer}). */
  let deferred: "soon" | "turn" | undefined;
  /** Counts the drains asked of the host: one made stale (asked again sooner) does nothing when it comes. */
  let asked = 0;
  let closeAsked = false;

  /**
   * What runs next: the queue up to its last group commit (everything sent before that commit shares its
   * transaction, nothing sent after it delays its answer), or the whole queue when it holds consumer batches only.
   */
  function nextRequests(): WorkerRequest[] {
    let last = -1;
    for (let i = queue.length - 1; i >= 0; i--) {
      if ("writes" in queue[i]!) {
        last = i;
        break;
      }
    }
    return queue.splice(0, last >= 0 ? last + 1 : queue.length);
  }

  /**
   * Takes in every message waiting on the port. A transaction runs synchronously, so the requests sent
   * meanwhile are not delivered as events until this thread's turn ends: taken here, before the next
   * transaction, they share it (runTogether) as they did when statements were asynchronous.
   */
  function takeWaiting(): void {
    for (let m = host.pull(); m; m = host.pull()) received(m);
  }

  async function drain(): Promise<void> {
    // One transaction at a time on the one connection, in the order sent.
    takeWaiting();
    let first = true;
    while (queue.length > 0) {
      if (!first && yielding) await yielding.between();
      first = false;
      const started = monotonicMs();
      const replies = await runTogether(nextRequests());
      // When its transaction ran (shared by the requests that shared it): the main side tells the hop from the work.
      const ran: [number, number] = [started, monotonicMs()];
      for (const reply of replies) {
        reply.ran = ran;
        host.reply(reply);
      }
      takeWaiting();
    }
    draining = undefined;
    if (closeAsked) {
      handle.close();
      host.closed();
    }
  }

  function received(msg: EngineMessage): void {
    if ("stats" in msg) return void host.reply({ stats: { ...shared } });
    if ("heap" in msg) return void host.reply({ heap: thisThreadHeap() });
    if ("close" in msg) closeAsked = true;
    else queue.push(msg);
  }

  return {
    take(msg) {
      received(msg);
      if ((queue.length === 0 && !closeAsked) || draining) return;
      // A group commit's commands wait for its answer: it does not wait for the turn's end (inline, that was a
      // whole further pass of the event loop for every command). A close does not either.
      const soon = "writes" in msg || closeAsked;
      if (deferred === "soon" || (deferred === "turn" && !soon)) return;
      deferred = soon ? "soon" : "turn";
      const mine = ++asked;
      host.defer(() => {
        if (mine !== asked) return;
        deferred = undefined;
        // Nothing in drain() should throw (each request's failure is its reply); if it does, the host ends
        // the engine (the thread exits), and the main side settles what was in flight and starts another.
        draining ??= drain().catch((err: unknown) => host.crash(err));
      }, soon);
    },
    abort() {
      try {
        handle.close();
      } catch {
        // Closed already.
      }
    },
  };
}
