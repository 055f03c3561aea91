/** A database made before the outbox kept trace context gains its columns on open, keeping its rows (SQLite and PostgreSQL). */
import { afterAll, describe, expect, it } from "vitest";
import { GroupCommitWriter, Repository, openDatabase } from "../../src/persistence/index.js";
import { postgresAvailable, profileWrite, tempPostgres, tempSqlitePath } from "../support/index.js";

const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

const dialects: [string, boolean, () => Promise<string>][] = [
  ["SQLite", true, async () => {
    const tmp = await tempSqlitePath();
    cleanups.push(tmp.cleanup);
    return `sqlite:${tmp.path}`;
  }],
  ["PostgreSQL", await postgresAvailable(), async () => {
    const pg = await tempPostgres();
    cleanups.push(pg.drop);
    return pg.url;
  }],
];

describe.each(dialects)("the outbox's trace columns on %s", (_name, available, make) => {
  it.skipIf(!available)("are added to an outbox made without them, whose rows stay and read as untraced", async () => {
    const url = await make();
    let db = await openDatabase({ url });
    await new GroupCommitWriter(db).submit(profileWrite("before", 1, "0190a0d0-0000-7000-8000-0000000000b1"));
    // The schema as it was before the columns existed.
    for (const column of ["traceparent", "tracestate"]) await db.execute(`alter table nerve_outbox drop column ${column}`, [], "run");
    await db.close();
    db = await openDatabase({ url });
    try {
      expect((await db.orm.schema.getUpdateSchemaSQL({ safe: true })).trim()).toBe("");
      await new GroupCommitWriter(db).submit({ ...profileWrite("after", 1, "0190a0d0-0000-7000-8000-0000000000b2"), traceparent: TRACEPARENT, tracestate: "a=b" });
      const rows = await new Repository(db).pendingOutbox(10);
      expect(rows.map((r) => [r.aggregate_id, r.traceparent, r.tracestate])).toEqual([
        ["before", null, null],
        ["after", TRACEPARENT, "a=b"],
      ]);
    } finally {
      await db.close();
    }
  });
});
