/**
 * A write-only projection's batches through the SQLite write worker go to it one ahead: the next batch is
 * sent while the one before commits. A later batch must still never commit before an earlier one that
 * failed: the worker does not run it (BatchLink), and the runner applies it again once the earlier one's
 * one-by-one retry is done. Real nats-server, real SQLite file, real worker thread.
 */
import { afterEach, describe, expect, it } from "vitest";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { Headers, encodeMsgPack } from "../../contracts/index.js";
import { ConsumerRunner, DeadLetters, EventHandler, type Subscriber, type Tx } from "../../src/consumers/index.js";
import { GroupCommitWriter } from "../../src/persistence/index.js";
import { until, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
import { envelope, openReadModels, quiet, type ReadModels } from "../projections/fixtures.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;
let m: ReadModels | undefined;
let writer: GroupCommitWriter | undefined;
let runner: ConsumerRunner | undefined;

useNatsWithStreams((h) => ({ nats, nc, jsm } = h));
afterEach(async () => {
  await runner?.stop();
  await writer?.close();
  await m?.close();
  await jsm.consumers.delete("EVENTS_COURSES", "ordered-rows").catch(() => false);
  await jsm.streams.purge("EVENTS_COURSES");
});

async function publishCourses(n: number): Promise<void> {
  const js = jetstream(nc);
  for (let i = 0; i < n; i++) {
    const e = envelope("CourseCreated", `ord-${i}`, 1, { course_id: `ord-${i}`, title: `Course ${i}`, instructor_id: "i1", policy_id: "p1" });
    const h = natsHeaders();
    h.set(Headers.EventType, "CourseCreated");
    await js.publish(`events.courses.CourseCreated.${e.aggregate_id}`, encodeMsgPack(e), { headers: h });
  }
}

const SLOW = "insert into slow_sink (x) select count(*) from (with recursive c(x) as (select 1 union all select x + 1 from c where x < 3000000) select x from c)";

const EVENTS = 700;

/**
 * A read model of the published events' indexes in commit order (`ordered-rows`, write-only) on a fresh
 * database, read by a runner through the write worker. `first` runs before each event's row is written
 * (true: write no row); `beforeStart` before the runner starts.
 */
async function orderedRows(first: (idx: number, tx: Tx) => Promise<boolean>, beforeStart?: (w: GroupCommitWriter) => void) {
  m = await openReadModels();
  const db = m.db;
  await db.execute("create table ordered_rows (n integer primary key autoincrement, idx integer not null)", [], "run");
  await db.execute("create table slow_sink (x integer)", [], "run");
  const subscriber: Subscriber = {
    name: "ordered-rows",
    handles: { courses: ["CourseCreated"] },
    writesOnly: true,
    async apply(e, tx) {
      const idx = Number(e.aggregate_id.slice("ord-".length));
      if (await first(idx, tx)) return;
      await tx.execute("insert into ordered_rows (idx) values (?)", [idx], "run");
    },
  };
  await publishCourses(EVENTS);
  writer = new GroupCommitWriter(db, { sqliteWriter: "worker" });
  const handler = new EventHandler(db, subscriber, undefined, undefined, writer.sqliteWorker);
  runner = new ConsumerRunner(jetstream(nc), jsm, handler, new DeadLetters(db), quiet, { maxDeliver: 5, backoffMs: [50] });
  beforeStart?.(writer);
  await runner.start();
  const r = runner;
  await until(`${EVENTS} events handled`, () => r.stats.handled >= EVENTS, 30_000, 25);
  const count = async (sql: string, params: unknown[] = []) => Number((await db.execute<{ n: number }>(sql, params, "get")).n);
  return {
    handler,
    runner: r,
    worker: writer.sqliteWorker!,
    order: async () => (await db.execute<{ idx: number }[]>("select idx from ordered_rows order by n", [], "all")).map((row) => Number(row.idx)),
    inbox: () => count("select count(*) as n from consumer_inbox where consumer = ?", ["ordered-rows"]),
    slowRows: () => count("select count(*) as n from slow_sink"),
  };
}

const inStreamOrder = Array.from({ length: EVENTS }, (_, i) => i);

describe("a write-only projection's batches through the write worker", () => {
  it("never commit a later batch before an earlier one that failed and was retried event by event", async () => {
    const FAIL_AT = 5;
    let failed = false;
    // Event FAIL_AT's first application (in the first batch) is slow, so the next batch is sent meanwhile,
    // and then fails at a statement that does not prepare; applied again (one by one), it succeeds.
    const run = await orderedRows(async (idx, tx) => {
      if (idx !== FAIL_AT || failed) return false;
      failed = true;
      await tx.execute(SLOW, [], "run");
      await tx.execute("insert into no_such_table (x) values (?)", [idx], "run");
      return true;
    });
    expect(run.handler.pipelines).toBe(true);
    // Every event once, committed in stream order: the batch behind the failed one waited for its retry.
    expect(await run.order()).toEqual(inStreamOrder);
    expect(failed).toBe(true);
    // The batch behind was at the worker when the failed one failed (the path under test was taken).
    expect(run.runner.stats.retriedBehind).toBeGreaterThanOrEqual(1);
    expect(run.runner.stats.deadLettered).toBe(0);
    expect(run.runner.stats.retries).toBe(0);
    expect(await run.inbox()).toBe(EVENTS);
    expect(await run.slowRows()).toBe(0);
    expect(run.worker.restarts).toBe(0);
  }, 60_000);

  it("lose nothing and keep their order when the worker dies with two of them in it", async () => {
    let slow = true;
    // The first batch's first application is slow, so that the next one is queued behind it when the worker
    // dies; its first transaction, the first batch's, exits with its statements run and not committed.
    const run = await orderedRows(
      async (_idx, tx) => {
        if (slow) {
          slow = false;
          await tx.execute(SLOW, [], "run");
        }
        return false;
      },
      (w) => w.sqliteWorker!.exitBeforeNextCommit(),
    );
    expect(run.worker.restarts).toBe(1);
    expect(await run.order()).toEqual(inStreamOrder);
    expect(run.runner.stats.retriedBehind).toBeGreaterThanOrEqual(2);
    expect(run.runner.stats.deadLettered).toBe(0);
    expect(await run.inbox()).toBe(EVENTS);
    expect(await run.slowRows()).toBe(0);
  }, 60_000);
});
