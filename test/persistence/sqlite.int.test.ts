/** SQLite: a schema that stays put across restarts. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GroupCommitWriter, Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { profileWrite, tempSqlitePath } from "../support/index.js";

let db: Database;
let path: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  const tmp = await tempSqlitePath();
  path = tmp.path;
  cleanup = tmp.cleanup;
  db = await openDatabase({ url: `sqlite:${path}` });
});
afterAll(async () => {
  await db?.close();
  await cleanup?.();
});

describe("openDatabase on SQLite", () => {
  it("finds nothing to change in its own schema when reopened, and keeps the event log and its sequence", async () => {
    await new GroupCommitWriter(db).submit(profileWrite("reopen", 1, "0190a0d0-0000-7000-8000-000000000001"));
    await db.close();
    db = await openDatabase({ url: `sqlite:${path}` });
    expect((await db.orm.schema.getUpdateSchemaSQL({ safe: true })).trim()).toBe("");
    // The log and its sequence carry on where they were.
    await new GroupCommitWriter(db).submit(profileWrite("reopen", 2, "0190a0d0-0000-7000-8000-000000000002"));
    const events = await db.execute<{ seq: number; aggregate_version: number }[]>("select seq, aggregate_version from nerve_events where aggregate_id = ? order by seq", ["reopen"]);
    expect(events.map((e) => e.aggregate_version)).toEqual([1, 2]);
    expect(events[1]!.seq).toBeGreaterThan(events[0]!.seq);
    expect((await new Repository(db).pendingOutbox(10)).map((r) => r.aggregate_version)).toEqual([1, 2]);
  });
});
