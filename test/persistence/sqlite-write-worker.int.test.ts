/**
 * The SQLite write worker: a worker that dies mid-transaction loses and half-commits nothing; requests that
 * queue share a transaction. Each on its thread and inline (the same engine on the main thread).
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { BatchLink, GroupCommitWriter, type Database, type OutboxRow } from "../../src/persistence/index.js";
import { processSemiSpaceMb, SqliteWriteWorker, WORKER_SEMI_SPACE_MB } from "../../src/persistence/sqlite-write-worker.js";
import { processExposesGc } from "../../src/persistence/worker-heap.js";
import { backgroundFailures } from "../../src/supervision/index.js";
import { monotonicMs } from "../../src/support/monotonic.js";
import { openSqlite } from "../../src/persistence/sqlite-lock.js";
import { captureLog, profileWrite, useSqliteDatabase } from "../support/index.js";

let db: Database;

/** A consumer batch of one event: its row in `inbox` (`returning` it when new), then `sql` bound with the id. */
const oneEventBatch = (inbox: string, id: string, sql: string) => ({
  inbox: [{ sql: `insert into ${inbox} (event_id) values (?) on conflict do nothing returning event_id`, params: [id] }],
  events: [{ eventId: id, statements: [{ sql, params: [id] }] }],
});

const eventCount = async (id: string) => Number((await db.execute<{ n: number }>("select count(*) as n from nerve_events where aggregate_id = ?", [id], "get")).n);

describe.each(["thread", "inline"] as const)("SqliteWriteWorker (%s)", (where) => {
  // A file of each mode's own: the tests' tables and aggregates are the same in both.
  useSqliteDatabase((d) => (db = d));

  it("fails the batch it dies in, commits none of it, reports the death and commits the next writes on a new worker", async () => {
    const { logger, errors } = captureLog();
    const writer = new GroupCommitWriter(db, { logger, sqliteWriter: where === "inline" ? "inline" : "worker" });
    expect(writer.sqliteWorker).toBeDefined();
    const committed: OutboxRow[] = [];
    writer.on("committed", (rows) => committed.push(...rows));
    await writer.submit(profileWrite("before", 1, "0190a0e0-0000-7000-8000-000000000001"));
    const failuresBefore = backgroundFailures.get("sqlite write worker") ?? 0;

    writer.sqliteWorker!.exitBeforeNextCommit();
    const outcome = writer.submit(profileWrite("victim", 1, "0190a0e0-0000-7000-8000-000000000002")).then(
      () => undefined,
      (err: unknown) => err,
    );
    // Sent while the victim's batch is on its way, the next write is in flight behind it (the writer keeps
    // two transactions in flight): it dies with the worker, uncommitted, or reaches the restarted worker.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const after = writer.submit(profileWrite("after", 1, "0190a0e0-0000-7000-8000-000000000003")).then(
      () => undefined,
      (err: unknown) => err,
    );

    expect(await outcome).toMatchObject({ name: "WriteWorkerStopped" });
    const afterOutcome = await after;
    if (afterOutcome === undefined) expect(await eventCount("after")).toBe(1);
    else {
      expect(afterOutcome).toMatchObject({ name: "WriteWorkerStopped" });
      expect(await eventCount("after")).toBe(0);
      await writer.submit(profileWrite("after", 1, "0190a0e0-0000-7000-8000-000000000003"));
    }
    expect(await eventCount("victim")).toBe(0);
    expect(await db.execute("select 1 from nerve_snapshots where aggregate_id = ?", ["victim"], "get")).toBeUndefined();
    expect(await eventCount("after")).toBe(1);
    expect(committed.map((r) => r.aggregate_id)).toEqual(["before", "after"]);
    expect(writer.sqliteWorker!.restarts).toBe(1);
    expect(backgroundFailures.get("sqlite write worker")).toBe(failuresBefore + 1);
    expect(errors().map((l) => l.msg)).toEqual([expect.stringContaining("SQLite write worker stopped")]);

    // The victim's own retry goes through, once.
    await writer.submit(profileWrite("victim", 1, "0190a0e0-0000-7000-8000-000000000004"));
    expect(await eventCount("victim")).toBe(1);
    await writer.close();
    await expect(writer.submit(profileWrite("closed", 1, "0190a0e0-0000-7000-8000-000000000005"))).rejects.toMatchObject({ name: "WriteWorkerStopped" });
  }, 30_000);

  if (where === "inline") {
    it("tells no heap of its own: inline, the engine's heap is the main thread's", async () => {
      const worker = new SqliteWriteWorker(db, () => undefined, undefined, "inline");
      await worker.commit([profileWrite("heap-inline", 1, "0190a0e0-0000-7000-8000-000000000202")]);
      expect(await worker.heap()).toBeUndefined();
      expect(await eventCount("heap-inline")).toBe(1);
      await worker.close();
    });

    it("commits a group commit before the turn of the event loop ends, and holds consumer batches alone until it ends, to share a group commit's transaction", async () => {
      const worker = new SqliteWriteWorker(db, () => undefined, undefined, "inline");
      await db.execute("create table turn_inbox (event_id text primary key)", [], "run");
      await db.execute("create table turn_rows (id text primary key)", [], "run");
      const batch = (id: string) => oneEventBatch("turn_inbox", id, "insert into turn_rows (id) values (?)");
      await worker.commit([profileWrite("turn-warm", 1, "0190a0e0-0000-7000-8000-000000000601")]);
      const turnEnd = (order: string[]) => new Promise<void>((done) => setImmediate(() => done(void order.push("turn ended"))));
      // A group commit sent after the turn's end was asked for is answered before it: no further pass of the event loop.
      const commitOrder: string[] = [];
      const ended = turnEnd(commitOrder);
      await Promise.all([worker.commit([profileWrite("turn-commit", 1, "0190a0e0-0000-7000-8000-000000000602")]).then(() => void commitOrder.push("committed")), ended]);
      expect(commitOrder).toEqual(["committed", "turn ended"]);
      // A consumer batch alone waits for the turn's end.
      const batchOrder: string[] = [];
      const ended2 = turnEnd(batchOrder);
      await Promise.all([worker.applyConsumerBatch(batch("t1")).then(() => void batchOrder.push("applied")), ended2]);
      expect(batchOrder).toEqual(["turn ended", "applied"]);
      // One sent with a group commit in the same turn shares its transaction.
      const before = await worker.sharedTransactions();
      await Promise.all([worker.applyConsumerBatch(batch("t2")), worker.commit([profileWrite("turn-shared", 1, "0190a0e0-0000-7000-8000-000000000603")])]);
      const after = await worker.sharedTransactions();
      expect({ transactions: after.transactions - before.transactions, requests: after.requests - before.requests }).toEqual({ transactions: 1, requests: 2 });
      expect((await db.execute<{ id: string }[]>("select id from turn_rows order by id", [], "all")).map((r) => r.id)).toEqual(["t1", "t2"]);
      expect(await eventCount("turn-commit")).toBe(1);
      await worker.close();
    });
  } else it("reports its thread's own V8 heap while it runs, and nothing once closed", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined);
    await worker.commit([profileWrite("heap-a", 1, "0190a0e0-0000-7000-8000-000000000201")]);
    const heap = await worker.heap();
    expect(heap?.heapTotal).toBeGreaterThan(1_000_000);
    expect(heap!.heapUsed).toBeGreaterThan(0);
    expect(heap!.heapUsed).toBeLessThanOrEqual(heap!.heapTotal);
    expect(heap!.spaces.old_space?.size).toBeGreaterThan(0);
    expect(heap!.spaces.new_space?.size).toBeGreaterThan(0);
    // Its own isolate's, not the main thread's (which holds vitest and this test).
    expect(heap!.heapUsed).not.toBe(process.memoryUsage().heapUsed);
    await worker.close();
    expect(await worker.heap()).toBeUndefined();
  }, 30_000);

  it("tells each group commit's parts — the hop to its thread, the transaction, the answer's way back — within what the caller waited", async () => {
    const told: [number, number, number][] = [];
    const worker = new SqliteWriteWorker(db, () => undefined, (wait, run, answer) => told.push([wait, run, answer]), where);
    const published: number[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const sent = monotonicMs();
        published.push(...(await worker.commit([profileWrite(`timed-${i}`, 1, `0190a0e0-0000-7000-8000-00000000071${i}`)])).map((r) => Number(r.seq)));
        const waited = (monotonicMs() - sent) / 1000;
        expect(told).toHaveLength(i + 1);
        const [wait, run, answer] = told[i]!;
        for (const part of [wait, run, answer]) expect(part).toBeGreaterThanOrEqual(0);
        // A transaction that writes and syncs the WAL takes time; the three parts fit in the caller's wait.
        expect(run).toBeGreaterThan(0);
        expect(wait + run + answer).toBeLessThanOrEqual(waited + 1e-6);
      }
      // A transaction that only deletes published rows is no group commit with writes: not told.
      await worker.commit([], published);
      expect(told).toHaveLength(3);
    } finally {
      await worker.close();
    }
  }, 30_000);

  it("lets the requests that queued during a transaction share the next one, and runs them alone when one of them fails", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await db.execute("create table shared_inbox (event_id text primary key)", [], "run");
    await db.execute("create table shared_rows (id text primary key)", [], "run");
    const batch = (id: string) => oneEventBatch("shared_inbox", id, "insert into shared_rows (id) values (?)");
    const rows = async () => (await db.execute<{ id: string }[]>("select id from shared_rows order by id", [], "all")).map((r) => r.id);
    // Sent in one go, the four are taken in together: the queue up to its last group commit (first, x1, shared-b)
    // shares one transaction; x2, behind the last group commit, runs next.
    const first = worker.commit([profileWrite("shared-a", 1, "0190a0e0-0000-7000-8000-000000000101")]);
    const together = [worker.applyConsumerBatch(batch("x1")), worker.commit([profileWrite("shared-b", 1, "0190a0e0-0000-7000-8000-000000000102")]), worker.applyConsumerBatch(batch("x2"))];
    await first;
    expect(await Promise.all(together)).toMatchObject([[true], [{ aggregate_id: "shared-b" }], [true]]);
    expect(await worker.sharedTransactions()).toMatchObject({ transactions: 1, requests: 3 });
    expect(await rows()).toEqual(["x1", "x2"]);
    // A stale write among them: the shared transaction rolls back and each runs alone; only the stale one fails.
    const head = worker.commit([profileWrite("shared-c", 1, "0190a0e0-0000-7000-8000-000000000103")]);
    const mixed = [worker.applyConsumerBatch(batch("y1")), worker.commit([profileWrite("shared-a", 1, "0190a0e0-0000-7000-8000-000000000104")]), worker.commit([profileWrite("shared-d", 1, "0190a0e0-0000-7000-8000-000000000105")])];
    await head;
    const [y1, stale, d] = await Promise.allSettled(mixed);
    expect(y1).toMatchObject({ status: "fulfilled", value: [true] });
    expect(stale).toMatchObject({ status: "rejected", reason: { name: "StaleWriteError" } });
    expect(d).toMatchObject({ status: "fulfilled", value: [{ aggregate_id: "shared-d" }] });
    expect(await rows()).toEqual(["x1", "x2", "y1"]);
    expect(await eventCount("shared-a")).toBe(1);
    expect(await eventCount("shared-d")).toBe(1);
    expect(await worker.sharedTransactions()).toMatchObject({ transactions: 1, requests: 3 });
    await worker.close();
  }, 30_000);

  it("fails a batch whose statement does not prepare, as it does any database error, and lives on", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await db.execute("create table prepared_inbox (event_id text primary key)", [], "run");
    await db.execute("create table prepared_rows (id text primary key)", [], "run");
    const batch = (id: string, sql: string) => oneEventBatch("prepared_inbox", id, sql);
    await expect(worker.applyConsumerBatch(batch("p1", "insert into no_such_table (id) values (?)"))).rejects.toMatchObject({
      code: "SQLITE_ERROR",
      message: expect.stringContaining("no such table: no_such_table"),
    });
    // Rolled back whole, its inbox row with it; the same batch with good SQL goes through on the same thread.
    expect(await db.execute("select event_id from prepared_inbox", [], "all")).toEqual([]);
    expect(await worker.applyConsumerBatch(batch("p1", "insert into prepared_rows (id) values (?)"))).toEqual([true]);
    expect(await db.execute("select id from prepared_rows", [], "all")).toEqual([{ id: "p1" }]);
    expect(worker.restarts).toBe(0);
    await worker.close();
  }, 30_000);

  it("binds booleans, Dates and undefined as node-sqlite3 did (1 / 0, epoch ms, null), on its thread and on the reader", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await db.execute("create table bound_inbox (event_id text primary key)", [], "run");
    await db.execute("create table bound_rows (id text primary key, flag integer, at integer, gone text)", [], "run");
    const batch = {
      inbox: [{ sql: "insert into bound_inbox (event_id) values (?) on conflict do nothing returning event_id", params: ["b1"] }],
      events: [{ eventId: "b1", statements: [{ sql: "insert into bound_rows (id, flag, at, gone) values (?, ?, ?, ?), (?, ?, ?, ?)", params: ["t", true, new Date(1_700_000_000_123), undefined, "f", false, new Date(5), null] }] }],
    };
    expect(await worker.applyConsumerBatch(batch)).toEqual([true]);
    expect(await db.read("select id, flag, at, gone from bound_rows order by id", [])).toEqual([
      { id: "f", flag: 0, at: 5, gone: null },
      { id: "t", flag: 1, at: 1_700_000_000_123, gone: null },
    ]);
    expect(await db.read("select id from bound_rows where flag = ? and at = ? and gone is ?", [true, new Date(1_700_000_000_123), undefined], "get")).toEqual({ id: "t" });
    await worker.close();
  });

  it("keeps temporary files in memory on its connection and on the main one (a group commit's spilled statement journal is no file in /var/tmp)", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await db.execute("create table temp_inbox (event_id text primary key)", [], "run");
    await db.execute("create table temp_store_seen (id text primary key, v integer)", [], "run");
    const batch = oneEventBatch("temp_inbox", "worker", "insert into temp_store_seen (id, v) select ?, temp_store from pragma_temp_store()");
    expect(await worker.applyConsumerBatch(batch)).toEqual([true]);
    // 2 is MEMORY (0 the compile-time default, 1 FILE).
    expect(await db.read("select v from temp_store_seen where id = ?", ["worker"], "get")).toEqual({ v: 2 });
    expect(await db.execute("select temp_store as v from pragma_temp_store()", [], "get")).toEqual({ v: 2 });
    await worker.close();
  });

  it("waits for another connection's write lock without holding the event loop, then commits", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await worker.commit([profileWrite("lock-warm", 1, "0190a0e0-0000-7000-8000-000000000401")]);
    // Another connection (the main one, say, in a transaction that awaits something) holds the write lock
    // until a timer of the event loop lets go of it.
    const other = openSqlite(db.sqliteFile!.path, 0);
    try {
      other.exec("begin immediate");
      const order: string[] = [];
      const released = new Promise<void>((resolve) =>
        setTimeout(() => {
          other.exec("commit");
          order.push("released");
          resolve();
        }, 60),
      );
      const committed = worker.commit([profileWrite("lock-waiter", 1, "0190a0e0-0000-7000-8000-000000000402")]).then(() => void order.push("committed"));
      await Promise.all([released, committed]);
      // Committed once the lock was let go, not failed at the busy timeout: the timer that let go ran while the
      // commit waited. Inline, a wait inside SQLite would have stopped the event loop, so the holder could not
      // let go until the busy timeout had failed the commit.
      expect(order).toEqual(["released", "committed"]);
      expect(await eventCount("lock-waiter")).toBe(1);
    } finally {
      other.close();
      await worker.close();
    }
  }, 30_000);

  it("fails a commit whose lock stays taken past the busy timeout, and commits the next one", async () => {
    // The same file with a busy timeout of 500 ms instead of the service's 5 s: the same wait and failure, sooner.
    const busyTimeoutMs = 500;
    const worker = new SqliteWriteWorker({ ...db, sqliteFile: { ...db.sqliteFile!, busyTimeoutMs } }, () => undefined, undefined, where);
    const other = openSqlite(db.sqliteFile!.path, 0);
    try {
      other.exec("begin immediate");
      const started = monotonicMs();
      await expect(worker.commit([profileWrite("lock-timeout", 1, "0190a0e0-0000-7000-8000-000000000403")])).rejects.toMatchObject({ code: expect.stringMatching(/^SQLITE_BUSY/) });
      // It waited its busy timeout out before failing (a lower bound on its own setting, not a speed).
      expect(monotonicMs() - started).toBeGreaterThanOrEqual(busyTimeoutMs - 100);
      other.exec("commit");
      await worker.commit([profileWrite("lock-timeout", 1, "0190a0e0-0000-7000-8000-000000000404")]);
      expect(await eventCount("lock-timeout")).toBe(1);
    } finally {
      if (other.inTransaction) other.exec("rollback");
      other.close();
      await worker.close();
    }
  }, 30_000);

  it("runs a main-connection transaction given to exclusive once nothing is in flight, and holds what is sent meanwhile", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await db.execute("create table exclusive_rows (id text primary key)", [], "run");
    const order: string[] = [];
    const first = worker.commit([profileWrite("exclusive-a", 1, "0190a0e0-0000-7000-8000-000000000501")]).then(() => void order.push("a committed"));
    let second: Promise<void> | undefined;
    const lockFree = await worker.exclusive(async () => {
      order.push("main transaction");
      // Nothing of the worker's holds the lock: a connection that does not wait at all takes it at once.
      const probe = openSqlite(db.sqliteFile!.path, 0);
      try {
        probe.exec("begin immediate");
        probe.exec("commit");
      } finally {
        probe.close();
      }
      // Sent now, held until this ends: it must not be waited for in here.
      second = worker.commit([profileWrite("exclusive-b", 1, "0190a0e0-0000-7000-8000-000000000502")]).then(() => void order.push("b committed"));
      await db.connection.transactional(async (trx) => {
        await db.execute("insert into exclusive_rows (id) values (?)", ["main"], "run", trx);
        await new Promise((r) => setTimeout(r, 20));
      });
      order.push("main committed");
      return true;
    });
    await Promise.all([first, second]);
    expect(lockFree).toBe(true);
    expect(order).toEqual(["a committed", "main transaction", "main committed", "b committed"]);
    expect(await eventCount("exclusive-a")).toBe(1);
    expect(await eventCount("exclusive-b")).toBe(1);
    expect(await db.execute("select id from exclusive_rows", [], "all")).toEqual([{ id: "main" }]);
    await worker.close();
  }, 30_000);

  it("lets what an exclusive run held go before the next exclusive run, so overlapping runs never starve the worker", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    const order: string[] = [];
    let endFirst!: () => void;
    const first = worker.exclusive(async () => {
      order.push("first run");
      await new Promise<void>((resolve) => (endFirst = resolve));
    });
    await new Promise((r) => setImmediate(r));
    const held = worker.commit([profileWrite("turn-held", 1, "0190a0e0-0000-7000-8000-000000000506")]).then(() => void order.push("held committed"));
    // Comes while the commit is held: it waits for the commit to be sent, and then, as any run, for it to commit.
    const second = worker.exclusive(async () => void order.push("second run"));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(["first run"]);
    endFirst();
    await Promise.all([first, held, second]);
    expect(order).toEqual(["first run", "held committed", "second run"]);
    await worker.close();
  }, 30_000);

  it("ends an exclusive wait when the worker dies with a request in flight, and sends what it held to the next worker", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await worker.commit([profileWrite("exclusive-warm", 1, "0190a0e0-0000-7000-8000-000000000503")]);
    worker.exitBeforeNextCommit();
    const victim = worker.commit([profileWrite("exclusive-victim", 1, "0190a0e0-0000-7000-8000-000000000504")]).then(
      () => undefined,
      (err: unknown) => err,
    );
    let held: Promise<unknown> | undefined;
    await worker.exclusive(async () => {
      held = worker.commit([profileWrite("exclusive-held", 1, "0190a0e0-0000-7000-8000-000000000505")]);
    });
    expect(await victim).toMatchObject({ name: "WriteWorkerStopped" });
    await held;
    expect(await eventCount("exclusive-victim")).toBe(0);
    expect(await eventCount("exclusive-held")).toBe(1);
    await worker.close();
  }, 30_000);

  if (where === "inline")
    it("lets the answer of one transaction write on another connection before the next transaction takes the lock", async () => {
      const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
      await db.execute("create table answer_inbox (event_id text primary key)", [], "run");
      await db.execute("create table answer_rows (id text primary key)", [], "run");
      await db.execute("create table answer_side (id text primary key)", [], "run");
      const other = openSqlite(db.sqliteFile!.path, 0);
      try {
        // The first commit waits for the lock (held here); the consumer batch sent meanwhile gets a transaction of its own.
        other.exec("begin immediate");
        let sideWrite: unknown = "not run";
        const first = worker.commit([profileWrite("answer-first", 1, "0190a0e0-0000-7000-8000-000000000405")]).then(async () => {
          // A few awaits away from the answer (as a command's reply is), still before any timer or I/O, a caller
          // writes synchronously on another connection (as the main one does; no busy timeout here).
          for (let i = 0; i < 3; i++) await Promise.resolve();
          try {
            other.prepare("insert into answer_side (id) values (?)").run("side");
            sideWrite = undefined;
          } catch (err) {
            sideWrite = err;
          }
        });
        await new Promise((r) => setTimeout(r, 10));
        const second = worker.applyConsumerBatch(oneEventBatch("answer_inbox", "answer-second", "insert into answer_rows (id) values (?)"));
        await new Promise((r) => setTimeout(r, 10));
        other.exec("commit");
        await first;
        expect(sideWrite).toBeUndefined();
        expect(await second).toEqual([true]);
        expect(await db.read("select id from answer_side", [])).toEqual([{ id: "side" }]);
      } finally {
        other.close();
        await worker.close();
      }
    }, 30_000);

  it("runs a consumer batch sent on a link before the one ahead of it committed only when that one commits", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    await db.execute("create table linked_inbox (event_id text primary key)", [], "run");
    await db.execute("create table linked_rows (n integer primary key autoincrement, id text not null)", [], "run");
    const batch = (id: string, sql = "insert into linked_rows (id) values (?)") => oneEventBatch("linked_inbox", id, sql);
    const failing = (id: string) => batch(id, "insert into no_such_table (id) values (?)");
    const rows = async () => (await db.execute<{ id: string }[]>("select id from linked_rows order by n", [], "all")).map((r) => r.id);
    const inbox = async () => (await db.execute<{ event_id: string }[]>("select event_id from linked_inbox order by event_id", [], "all")).map((r) => r.event_id);
    const settle = (p: Promise<unknown>) => p.then((value) => ({ value }), (reason: Error) => ({ reason: reason.name, message: reason.message }));

    // Behind a group commit, so that all of them queue: the failed batch's follower on its link does not run,
    // an unlinked batch sent after both still commits (a failure stays its reader's).
    const head = worker.commit([profileWrite("linked-head", 1, "0190a0e0-0000-7000-8000-000000000301")]);
    const a1 = new BatchLink();
    const a2 = new BatchLink(a1);
    const first = settle(worker.applyConsumerBatch(failing("a1"), a1));
    const second = settle(worker.applyConsumerBatch(batch("a2"), a2));
    expect(a1.state).toBe("queued");
    // a2 is sent once a1 is queued: a turn of the microtask queue.
    await Promise.resolve();
    await Promise.resolve();
    expect(a2.state).toBe("queued");
    expect(a2.before).toBeUndefined();
    const other = settle(worker.applyConsumerBatch(batch("b1")));
    await head;
    // The statement that does not prepare fails its batch like any database error; the worker lives on.
    expect(await first).toMatchObject({ message: expect.stringContaining("no such table: no_such_table") });
    expect(await second).toMatchObject({ reason: "BatchBeforeFailed" });
    expect(await other).toEqual({ value: [true] });
    expect([a1.state, a2.state]).toEqual(["failed", "failed"]);
    expect(await rows()).toEqual(["b1"]);
    expect(await inbox()).toEqual(["b1"]);

    // Behind a batch that commits, a linked batch commits after it.
    const c1 = new BatchLink();
    const c2 = new BatchLink(c1);
    const c3 = new BatchLink(c2);
    expect(await Promise.all([worker.applyConsumerBatch(batch("c1"), c1), worker.applyConsumerBatch(batch("c2"), c2), worker.applyConsumerBatch(batch("c3"), c3)])).toEqual([[true], [true], [true]]);
    expect([c1.state, c2.state, c3.state]).toEqual(["committed", "committed", "committed"]);
    expect(await rows()).toEqual(["b1", "c1", "c2", "c3"]);

    // Behind a batch that failed before it reached the worker: refused at once, nothing sent.
    const d1 = new BatchLink();
    d1.failed();
    const d2 = new BatchLink(d1);
    await expect(worker.applyConsumerBatch(batch("d2"), d2)).rejects.toMatchObject({ name: "BatchBeforeFailed" });
    expect(d2.state).toBe("failed");
    // The failed ones go through once sent again (the runner's retry), in order.
    expect(await worker.applyConsumerBatch(batch("a1"))).toEqual([true]);
    expect(await worker.applyConsumerBatch(batch("a2"))).toEqual([true]);
    expect(await rows()).toEqual(["b1", "c1", "c2", "c3", "a1", "a2"]);
    expect(worker.restarts).toBe(0);
    await worker.close();
  }, 30_000);
});

describe("the write worker's young generation", () => {
  it("reads the process's --max-semi-space-size from its flags and NODE_OPTIONS, the last one winning", () => {
    expect(processSemiSpaceMb(["--max-semi-space-size=64", "--import", "tsx"], "")).toBe(64);
    expect(processSemiSpaceMb([], "--max-old-space-size=768 --max_semi_space_size=32")).toBe(32);
    expect(processSemiSpaceMb(["--max-semi-space-size=16"], "--max-semi-space-size=32")).toBe(16);
    expect(processSemiSpaceMb(["--max-old-space-size=768"], "")).toBeUndefined();
  });

  it("reads whether the process exposes gc() from its flags and NODE_OPTIONS, the last one winning", () => {
    expect(processExposesGc(["--expose-gc", "--import", "tsx"], "")).toBe(true);
    expect(processExposesGc([], "--expose_gc")).toBe(true);
    expect(processExposesGc(["--no-expose-gc"], "--expose-gc")).toBe(false);
    expect(processExposesGc(["--max-semi-space-size=64"], "")).toBe(false);
  });

  it("is its own size under the service's --max-semi-space-size=64, which the main thread keeps", async () => {
    const fixture = fileURLToPath(new URL("./fixtures/worker-semi-space.ts", import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, ["--max-semi-space-size=64", "--import", "tsx", fixture], { cwd: fileURLToPath(new URL("../..", import.meta.url)) });
    const { workerMb, mainMb } = JSON.parse(stdout.trim().split("\n").at(-1)!) as { workerMb: number; mainMb: number };
    // Two semi-spaces of WORKER_SEMI_SPACE_MB at most in the worker; the main thread grows past that under the same garbage.
    expect(workerMb).toBeLessThanOrEqual(2 * WORKER_SEMI_SPACE_MB);
    expect(mainMb).toBeGreaterThan(2 * WORKER_SEMI_SPACE_MB);
  }, 60_000);
});
