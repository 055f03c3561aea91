/**
 * The thread of the SQLite write worker: a connection of its own to the service's file, which runs each
 * group commit it is sent as one transaction with statements prepared once (with the consumer batches
 * queued beside it, one transaction for all: see runTogether). Its statements still go through libuv's
 * thread pool, but back to this thread's event loop, not the main one.
 *
 * It uses the `sqlite3` driver MikroORM uses, not better-sqlite3: each driver links its own copy of
 * SQLite, and two copies in one process corrupt a database they share (POSIX locks are per process,
 * so neither copy sees the other's; sqlite.org/howtocorrupt.html §2.2.1). With better-sqlite3 here, a
 * main-thread read missed a commit of this thread once a connection had been closed and reopened.
 */
import { getHeapSpaceStatistics } from "node:v8";
import { parentPort, workerData } from "node:worker_threads";
import type { Statement } from "sqlite3";
import { StaleWriteError, writeStatements, type Exec } from "./batch-statements.js";
import { runConsumerBatch } from "./consumer-batch.js";
import { ExtraKinds, fitsOneStatement, NEXT_SEQ_SQL, ONE_STATEMENT_SETUP, oneStatement, STALE_ABORT } from "./one-statement.js";
import { openSqlite3 } from "./sqlite-lock.js";
import type { WorkerReply, WorkerRequest, WorkerSetup } from "./sqlite-write-worker.js";

/**
 * Prepared statements kept (by SQL text), least recently used first out. Multi-row statements differ by
 * row count (up to 200 rows for each of the group commit's tables, 500 outbox deletes, 500 inbox rows),
 * so the texts seen over hours run to well over a thousand, each holding SQLite memory: with 2,000 kept
 * the soak's native memory still grew at minute 16 of 30. The common sizes stay prepared; a rare one is
 * prepared again, which costs less than its memory.
 */
const MAX_STATEMENTS = 256;

const setup = workerData as WorkerSetup;

function call<T>(fn: (cb: (err: Error | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res as T))));
}

const handle = await openSqlite3(setup.path, setup.busyTimeoutMs);
// The main connection's pragmas: the same durability for a commit whichever connection makes it.
const plain = (sql: string) => call<void>((cb) => handle.exec(sql, cb));
await plain("pragma journal_mode = WAL");
await plain(`pragma synchronous = ${setup.synchronous === "NORMAL" ? "NORMAL" : "FULL"}`);
await plain(`pragma busy_timeout = ${Math.floor(setup.busyTimeoutMs)}`);
// As on the main connection: the database's checkpointer copies the WAL, never a commit of this thread.
await plain("pragma wal_autocheckpoint = 0");
await plain(`pragma journal_size_limit = ${Math.floor(setup.walSizeLimit)}`);
// The TEMP view through which a small group commit is one statement (one-statement.ts).
await plain(ONE_STATEMENT_SETUP);

const statements = new Map<string, Statement>();

/**
 * A statement that does not prepare (a projection's SQL error, a table a migration did not make) fails its
 * request like any database error. node-sqlite3 reports a failed prepare only to the prepare's callback:
 * without one it emits `error` on the statement — uncaught, the end of this thread — and never calls back
 * the statement's run.
 */
function prepare(sql: string): Promise<Statement> {
  return new Promise((resolve, reject) => {
    const st: Statement = handle.prepare(sql, (err: Error | null) => {
      if (!err) return resolve(st);
      st.finalize();
      reject(err);
    });
  });
}

async function statement(sql: string): Promise<Statement> {
  let st = statements.get(sql);
  if (st) {
    // Most recently used last: a Map iterates in insertion order.
    statements.delete(sql);
  } else {
    st = await prepare(sql);
    if (statements.size >= MAX_STATEMENTS) {
      // Statements run one at a time here (each awaited): the one let go is not running.
      const [oldest, prepared] = statements.entries().next().value as [string, Statement];
      statements.delete(oldest);
      prepared.finalize();
    }
  }
  statements.set(sql, st);
  return st;
}

const exec: Exec = async (sql, params, method) => {
  const st = await statement(sql);
  return method === "all" ? call((cb) => st.all(params, cb)) : call<never>((cb) => st.run(params, (err) => cb(err, [] as never)));
};

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

// `begin immediate` takes the write lock first, waiting (busy_timeout) for the main connection's own
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
      return await statementsOf(req);
    } catch (err) {
      nextSeq = undefined;
      return failed(req, err);
    }
  }
  try {
    await plain("begin immediate");
    try {
      const reply = await statementsOf(req);
      if (req.exitBeforeCommit) process.exit(1);
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
  if (fitsOneStatement(req.writes, req.published, extras)) {
    nextSeq ??= (await call<{ next: number }>((cb) => handle.get(NEXT_SEQ_SQL, cb))).next;
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
  const seqs = await writeStatements(exec, req.writes, req.published);
  // AUTOINCREMENT numbered these past every seq given before; the next one-statement commit goes on from them.
  if (nextSeq !== undefined) for (const s of seqs) nextSeq = Math.max(nextSeq, s + 1);
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
    await plain("begin immediate");
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

const port = parentPort!;
const queue: WorkerRequest[] = [];
let draining: Promise<void> | undefined;
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

async function drain(): Promise<void> {
  // One transaction at a time on the one connection, in the order sent.
  while (queue.length > 0) for (const reply of await runTogether(nextRequests())) port.postMessage(reply);
  draining = undefined;
  if (closeAsked) {
    for (const st of statements.values()) st.finalize();
    await call<void>((cb) => handle.close(cb));
    port.close();
  }
}

port.on("message", (msg: WorkerRequest | { close: true } | { stats: true } | { heap: true }) => {
  if ("stats" in msg) return port.postMessage({ stats: { ...shared } });
  if ("heap" in msg) {
    // This isolate's heap (process.memoryUsage's heap figures are the calling thread's).
    const { heapTotal, heapUsed, external } = process.memoryUsage();
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name, { size: sp.space_size, used: sp.space_used_size }]));
    return port.postMessage({ heap: { heapTotal, heapUsed, external, spaces } });
  }
  if ("close" in msg) closeAsked = true;
  else queue.push(msg);
  // Nothing in drain() should throw (each request's failure is its reply); if it does, this thread ends,
  // and the main side settles what was in flight and starts another.
  draining ??= drain().catch(() => process.exit(1));
});
