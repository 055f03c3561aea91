/**
 * Writes on the main connection beside the SQLite write worker — a dead letter, a fired timer's row — take
 * the worker's exclusive turn (SqliteWriteWorker.exclusive): they run once nothing is in flight there and
 * hold what is sent meanwhile, so the main thread never waits for the worker's write lock inside SQLite.
 * Each with the engine on its thread and inline (where a wait inside SQLite would stand the engine still).
 */
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { consumerEntities } from "../../src/consumers/index.js";
import { DeadLetters } from "../../src/consumers/dead-letters.js";
import { SoleOwnership } from "../../src/cluster/index.js";
import type { Database, ExclusiveWriter } from "../../src/persistence/index.js";
import { SqliteWriteWorker } from "../../src/persistence/sqlite-write-worker.js";
import type { CommandBus } from "../../src/runtime/index.js";
import { TimerService, timerOp, type TimerKind } from "../../src/timers/index.js";
import { profileWrite, useSqliteDatabase } from "../support/index.js";

let db: Database;
const quiet = pino({ level: "silent" });

/** The worker, with each exclusive turn it gives counted. */
function counted(worker: SqliteWriteWorker): { writer: ExclusiveWriter; turns: () => number } {
  let turns = 0;
  return {
    writer: {
      exclusive: <T>(fn: () => Promise<T>) => {
        turns++;
        return worker.exclusive(fn);
      },
    },
    turns: () => turns,
  };
}

describe.each(["thread", "inline"] as const)("main-connection writes beside the write worker (%s)", (where) => {
  useSqliteDatabase((d) => (db = d), consumerEntities);

  it("stores a dead letter after the commit in flight, and holds a commit sent meanwhile until it is stored", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    try {
      const { writer, turns } = counted(worker);
      const deadLetters = new DeadLetters(db, writer);
      const order: string[] = [];
      const a = worker.commit([profileWrite(`dl-a-${where}`, 1, where === "thread" ? "0190a0e0-0000-7000-8000-000000000601" : "0190a0e0-0000-7000-8000-000000000611")]).then(() => void order.push("a committed"));
      const stored = deadLetters.add({ consumer: `catalog-${where}`, stream: "EVENTS_COURSES", stream_seq: 3, event_id: null, event_type: "CourseUpdated", envelope: null, reason: "poison", attempts: 5 }).then(() => void order.push("dead letter stored"));
      const b = worker.commit([profileWrite(`dl-b-${where}`, 1, where === "thread" ? "0190a0e0-0000-7000-8000-000000000602" : "0190a0e0-0000-7000-8000-000000000612")]).then(() => void order.push("b committed"));
      await Promise.all([a, stored, b]);
      expect(order).toEqual(["a committed", "dead letter stored", "b committed"]);
      expect(turns()).toBe(1);
      expect(await deadLetters.list(`catalog-${where}`)).toMatchObject([{ stream_seq: 3, reason: "poison", attempts: 5 }]);
      // What /metrics counts by consumer (nerve_consumer_dead_letters), read as a query.
      expect(await deadLetters.countByConsumer()).toEqual(new Map([[`catalog-${where}`, 1]]));
    } finally {
      await worker.close();
    }
  }, 30_000);

  it("writes a fired timer's row in the worker's turn while commits stream in, and fires each due timer once", async () => {
    const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
    try {
      const { writer, turns } = counted(worker);
      const kind: TimerKind = { context: "access", aggregateType: "AccessRecord", kind: "expire", fire: () => [], deadline: () => null };
      const ids = [1, 2, 3].map((i) => `timer-${where}-${i}`);
      for (const id of ids) {
        const op = timerOp(kind, id, "2020-01-01T00:00:00.000Z");
        await db.execute(op.sql, op.params, "run");
      }
      // Each timer's operation sends a commit, as a real one does through the command bus: one is in flight whenever its row is written.
      const fired: string[] = [];
      let n = 0;
      const bus = {
        executeInternal: async (_context: string, id: string) => {
          fired.push(id);
          void worker.commit([profileWrite(`${id}-op`, 1, `0190a0e0-0000-7000-8000-0000000007${where === "thread" ? "0" : "1"}${n++}`)]);
        },
        readState: async () => ({ state: null, version: 0 }),
      } as unknown as CommandBus;
      await new TimerService({ db, bus, logger: quiet, kinds: [kind], ownership: new SoleOwnership("solo"), writer }).poll();
      expect(fired.sort()).toEqual(ids);
      // Every follow-up in a turn of the worker's; those that come while one is written share the next (FollowUpWriter).
      expect(turns()).toBeGreaterThanOrEqual(1);
      expect(turns()).toBeLessThanOrEqual(ids.length);
      expect(await db.execute("select aggregate_id from nerve_timers where aggregate_id like ?", [`timer-${where}-%`], "all")).toEqual([]);
    } finally {
      await worker.close();
    }
  }, 30_000);
});
