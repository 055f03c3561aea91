/**
 * A failed statement's error says what failed without the values it carried (a learner's email, a
 * snapshot's JSON): its message is what gets logged and kept as a dead letter's reason. Real SQLite
 * file, real PostgreSQL; the service's own logger.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { captureLog, postgresAvailable, tempPostgres, tempSqlitePath, type TempPostgres } from "../support/index.js";

const EMAIL = "alice.private@example.com";
const pgAvailable = await postgresAvailable();

async function failedInsert(db: Database): Promise<Error> {
  await db.execute("create table if not exists pii_probe (email text not null check (length(email) < 8))");
  return db.execute("insert into pii_probe (email) values (?)", [EMAIL], "run").then(
    () => {
      throw new Error("the insert went through");
    },
    (err: Error) => err,
  );
}

/** Everything of the error a log line or a dead letter could carry. */
function logged(err: Error): string {
  const log = captureLog("error");
  log.logger.error({ err }, "commit failed");
  return `${err.message}\n${err.stack}\n${JSON.stringify(log.lines)}`;
}

describe("a failed statement's error, on SQLite", () => {
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

  it("names the statement and the failure, not the bound values (was: the SQL with the email filled in)", async () => {
    const err = await failedInsert(db);
    expect(err.message).toContain("insert into pii_probe (email) values (?)");
    expect(err.message).toMatch(/CHECK constraint failed/);
    expect(logged(err)).not.toContain(EMAIL);
  });
});

describe.skipIf(!pgAvailable)("a failed statement's error, on PostgreSQL", () => {
  let pg: TempPostgres;
  let db: Database;
  beforeAll(async () => {
    pg = await tempPostgres();
    db = await openDatabase({ url: pg.url });
  });
  afterAll(async () => {
    await db?.close();
    await pg?.drop();
  });

  it("names the statement, the failure and the constraint, not the row PostgreSQL's `detail` spells out (was: the email, twice)", async () => {
    const err = (await failedInsert(db)) as Error & { constraint?: string };
    expect(err.message).toContain("insert into pii_probe (email) values ($1)");
    expect(err.constraint).toBe("pii_probe_email_check");
    const line = logged(err);
    expect(line).not.toContain(EMAIL);
    expect(line).toContain('violates check constraint \\"pii_probe_email_check\\"');
  });
});

describe("a logged error", () => {
  it("leaves `detail` out of a logged error's causes and an AggregateError's errors too", () => {
    const row = Object.assign(new Error("insert failed"), { detail: `Failing row contains (${EMAIL}).`, code: "23514" });
    const log = captureLog("error");
    log.logger.error({ err: new AggregateError([row], "two writes failed", { cause: row }) }, "commit failed");
    expect(JSON.stringify(log.lines)).not.toContain(EMAIL);
    expect(JSON.stringify(log.lines)).toContain("23514");
  });
});
