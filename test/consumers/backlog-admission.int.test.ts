/**
 * The writer's admission for projections (src/consumers/backlog.ts), on a real nats-server and a real
 * SQLite file: while the catalog is more than its limit behind and applying, `room()` holds a group
 * commit back and lets go once the catalog is within the limit; a catalog that applies nothing (its
 * database locked by another connection) is let go of after LAG_STALLED_MS, so it never stops commands.
 * The catalog's batches go to the SQLite write worker, as in the service: there a locked file blocks
 * the worker's thread, not the test's (better-sqlite3 waits for a lock on the calling thread).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Headers, encodeMsgPack } from "../../contracts/index.js";
import { ConsumerManager } from "../../src/consumers/index.js";
import { createLogger } from "../../src/log/index.js";
import { SqliteWriteWorker } from "../../src/persistence/sqlite-write-worker.js";
import { lockSqliteFile, until, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
import { envelope, openReadModels, type ReadModels } from "../projections/fixtures.js";

const LIMIT = 50;
/** A longest wait for room() that no test lives to see (the int tests time out after 60 s). */
const NEVER_MS = 10 * 60_000;
let nats: NatsServerHandle;
let nc: NatsConnection;
let m: ReadModels;
let manager: ConsumerManager;
let worker: SqliteWriteWorker;

/** Publishes `n` CourseCreated events, all in flight at once. */
async function publishCourses(prefix: string, n: number): Promise<void> {
  const js = jetstream(nc);
  await Promise.all(
    Array.from({ length: n }, (_, i) => {
      const id = `${prefix}-${i}`;
      const h = natsHeaders();
      h.set(Headers.EventType, "CourseCreated");
      return js.publish(`events.courses.CourseCreated.${id}`, encodeMsgPack(envelope("CourseCreated", id, 1, { course_id: id, title: `Course ${id}`, instructor_id: "i1", policy_id: "p1" })), { headers: h });
    }),
  );
}

const catalogBehind = () => Math.max(0, ...[...manager.runners.get("catalog")!.backlogs].map((b) => b.behind));
const catalogRows = async () => Number(((await m.tx.execute("select count(*) as n from catalog_courses", [], "get")) as { n: number }).n);

useNatsWithStreams((h) => ({ nats, nc } = h));
beforeAll(async () => {
  m = await openReadModels();
  worker = new SqliteWriteWorker(m.db, () => undefined);
  manager = new ConsumerManager({ db: m.db, js: jetstream(nc), jsm: await jetstreamManager(nc), logger: createLogger("silent"), subscribers: [m.subscriber("catalog")], lagLogMs: 0, backlogLimit: LIMIT, batchWriter: worker });
  await manager.start();
  // Caught up from the start: the stream is empty.
  await until("the catalog's reader is open", () => manager.runners.get("catalog")!.backlogs.size === 1);
});
afterAll(async () => {
  await manager?.stop();
  await worker?.close();
  await m?.close();
});

describe("admission by the projections' backlog", () => {
  it("holds a commit back while the catalog is over its limit and applying, and lets go once it is within", async () => {
    expect(manager.room(10_000)).toBeUndefined();
    const unlock = await lockSqliteFile(m.db.sqliteFile!.path);
    await publishCourses("held", 300);
    await until("the catalog is behind", () => catalogBehind() > LIMIT, 15_000, 5);
    // A longest wait far past the test's own timeout: only the catalog's catching up can let go in time.
    const wait = manager.room(NEVER_MS);
    expect(wait).toBeInstanceOf(Promise);
    let behindWhenLetGo = -1;
    const letGo = wait!.then(() => void (behindWhenLetGo = catalogBehind()));
    await unlock();
    await letGo;
    expect(behindWhenLetGo).toBeLessThanOrEqual(LIMIT);
    await until("all 300 courses are in the catalog", async () => (await catalogRows()) === 300);
    expect(manager.room(10_000)).toBeUndefined();
    expect(manager.backlogWaits).toBe(1);
  });

  it("lets go of commits once the catalog has applied nothing for LAG_STALLED_MS", async () => {
    const unlock = await lockSqliteFile(m.db.sqliteFile!.path);
    try {
      await publishCourses("stuck", 300);
      await until("the catalog is behind", () => catalogBehind() > LIMIT, 15_000, 5);
      const wait = manager.room(NEVER_MS);
      expect(wait).toBeInstanceOf(Promise);
      await wait;
      // Still locked, still behind: let go because it stalled, not because it caught up (nor after its longest
      // wait, far past the test's own timeout).
      expect(catalogBehind()).toBeGreaterThan(LIMIT);
      expect(manager.room(NEVER_MS)).toBeUndefined();
    } finally {
      await unlock();
    }
    await until("all 600 courses are in the catalog", async () => (await catalogRows()) === 600, 30_000);
  });
});
