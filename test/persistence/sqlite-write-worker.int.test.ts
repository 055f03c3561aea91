/** The SQLite write worker's own failure: a worker that dies mid-transaction loses and half-commits nothing. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GroupCommitWriter, openDatabase, type Database, type OutboxRow } from "../../src/persistence/index.js";
import { backgroundFailures } from "../../src/supervision/index.js";
import { captureLog, profileWrite, tempSqlitePath } from "../support/index.js";

let db: Database;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const tmp = await tempSqlitePath();
  cleanup = tmp.cleanup;
  db = await openDatabase({ url: `sqlite:${tmp.path}` });
});
afterAll(async () => {
  await db?.close();
  await cleanup?.();
});

const eventCount = async (id: string) => Number((await db.execute<{ n: number }>("select count(*) as n from nerve_events where aggregate_id = ?", [id], "get")).n);

describe("SqliteWriteWorker", () => {
  it("fails the batch it dies in, commits none of it, reports the death and commits the next writes on a new worker", async () => {
    const { logger, errors } = captureLog();
    const writer = new GroupCommitWriter(db, { logger, sqliteWriter: "worker" });
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
    // Once the victim's batch is on its way, the next write waits for the next batch: the restarted worker's.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const after = writer.submit(profileWrite("after", 1, "0190a0e0-0000-7000-8000-000000000003"));

    expect(await outcome).toMatchObject({ name: "WriteWorkerStopped" });
    await after;
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
});
