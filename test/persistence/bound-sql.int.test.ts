/**
 * Values reach SQLite and PostgreSQL as bound parameters and come back exactly (issue #10): with
 * MikroORM's `connection.execute`, which formats them into the SQL text, SQLite read a statement only
 * up to a NUL and failed with "unrecognized token", and every dead letter quoting such a failure was lost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeadLetters, consumerEntities } from "../../src/consumers/index.js";
import { Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, tempPostgres, tempSqlitePath, type TempPostgres } from "../support/index.js";

// Quotes, backslashes, placeholders and comment markers are data, never syntax.
const HOSTILE = ["it's", 'say "hi"', "back\\slash\\", "a ? b ?? c", "x'); drop table consumer_dead_letters; --", "📚 Kurs für Ärzte — 課程", " padded ", "tab\tand\nnewline", "\u0001\u001f\u007f"];

const pg = await postgresAvailable();

describe.each([
  { name: "SQLite", available: true },
  { name: "PostgreSQL", available: pg },
])("bound values on $name", ({ name, available }) => {
  let db: Database;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    if (!available) return;
    if (name === "SQLite") {
      const file = await tempSqlitePath();
      db = await openDatabase({ url: `sqlite:${file.path}`, entities: consumerEntities });
      cleanup = file.cleanup;
    } else {
      const temp: TempPostgres = await tempPostgres();
      db = await openDatabase({ url: temp.url, entities: consumerEntities });
      cleanup = temp.drop;
    }
  });
  afterAll(async () => {
    await db?.close();
    await cleanup?.();
  });

  it.skipIf(!available)("stores and returns every hostile string exactly, and reads it back by equality", async () => {
    for (const [i, text] of HOSTILE.entries()) {
      await db.execute("insert into user_emails (email, user_id) values (?, ?)", [`e${i}@example.com`, text], "run");
      expect(await new Repository(db).emailOwner(`e${i}@example.com`)).toBe(text);
      const row = await db.execute<{ email: string }>("select email from user_emails where user_id = ?", [text], "get");
      expect(row?.email).toBe(`e${i}@example.com`);
    }
  });

  it.skipIf(!available)("keeps a dead letter whose reason quotes a NUL, with the NUL written out", async () => {
    const dl = new DeadLetters(db);
    const reason = "SQLITE_ERROR: unrecognized token: \"'a\u0000b'\" \ud800";
    await dl.add({ consumer: "catalog", stream: "EVENTS_COURSES", stream_seq: 7, event_id: null, event_type: "CourseUpdated", envelope: JSON.stringify({ title: "a\u0000b" }), reason, attempts: 5 });
    const [stored] = await dl.list("catalog");
    expect(stored).toMatchObject({ stream_seq: 7, attempts: 5, reason: "SQLITE_ERROR: unrecognized token: \"'a\\u0000b'\" \uFFFD", envelope: { title: "a\u0000b" } });
  });
});

describe("bound values on SQLite only", () => {
  it("keeps U+0000 inside a stored value (SQLite stores it; PostgreSQL cannot, and the contract refuses it at the edge)", async () => {
    const file = await tempSqlitePath();
    const db = await openDatabase({ url: `sqlite:${file.path}` });
    try {
      await db.execute("insert into user_emails (email, user_id) values (?, ?)", ["nul@example.com", "a\u0000b"], "run");
      expect(await new Repository(db).emailOwner("nul@example.com")).toBe("a\u0000b");
    } finally {
      await db.close();
      await file.cleanup();
    }
  });
});
