import { describe, expect, it } from "vitest";
import { KnexTimeoutError } from "knex";
import { DriverException } from "@mikro-orm/core";
import { isTransientFailure, transientReason } from "../../src/consumers/transient.js";
import { FencedError } from "../../src/cluster/index.js";
import { CommitOutcomeUnknown, QueriesOverloaded, QueryFailed, QueryUnavailable } from "../../src/persistence/index.js";

// PostgreSQL's errors as pg reports them: a message and the SQLSTATE in `code`.
const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe("isTransientFailure on PostgreSQL's and Knex's failures", () => {
  it("retries a wait for a pooled connection that timed out, raw or as MikroORM converted it", () => {
    const timeout = new KnexTimeoutError("Knex: Timeout acquiring a connection. The pool is probably full. Are you missing a .transacting(trx) call?");
    expect(isTransientFailure(timeout)).toBe(true);
    // boundExecutor throws what MikroORM's exception converter makes of it: a DriverException, its name replaced.
    const converted = new DriverException(timeout);
    expect(converted.name).toBe("DriverException");
    expect(isTransientFailure(converted)).toBe(true);
    expect(isTransientFailure(new Error("projection failed", { cause: converted }))).toBe(true);
  });

  it("retries a write refused by a former primary (25006) and a statement cancelled by statement_timeout (57014)", () => {
    expect(isTransientFailure(pgError("25006", "cannot execute INSERT in a read-only transaction"))).toBe(true);
    expect(isTransientFailure(pgError("57014", "canceling statement due to statement timeout"))).toBe(true);
    expect(isTransientFailure(new DriverException(pgError("57014", "canceling statement due to statement timeout")))).toBe(true);
  });

  it("still counts an event's own failures towards the dead letters", () => {
    expect(isTransientFailure(pgError("23505", "duplicate key value violates unique constraint"))).toBe(false);
    expect(isTransientFailure(pgError("22P02", "invalid input syntax for type integer"))).toBe(false);
    expect(isTransientFailure(pgError("25001", "active SQL transaction"))).toBe(false);
    expect(isTransientFailure(pgError("57000", "operator intervention"))).toBe(false);
    expect(isTransientFailure(new Error("Timeout acquiring a lock on the fixture"))).toBe(false);
  });

  it("retries a query met by a closed or ended query side, or refused with too many waiting; not a query's own failure", () => {
    expect(isTransientFailure(new QueryUnavailable("the database is closed"))).toBe(true);
    expect(isTransientFailure(new QueryUnavailable("the query thread ended (exit code 1)"))).toBe(true);
    expect(isTransientFailure(new QueriesOverloaded("512 queries are waiting"))).toBe(true);
    expect(isTransientFailure(new CommitOutcomeUnknown("the commit's answer was lost"))).toBe(true);
    expect(isTransientFailure(new QueryFailed("no such column: x", "SQLITE_ERROR"))).toBe(false);
  });
});

describe("transientReason names what failed, for an unavailable reply", () => {
  it("a partition's move, JetStream, too many queries, else the storage", () => {
    expect(transientReason(new Error("commit failed", { cause: new FencedError(["partition:3"]) }))).toMatch(/partition moved/);
    expect(transientReason(new QueriesOverloaded("512 waiting"))).toMatch(/too many queries/);
    expect(transientReason(pgError("08006", "connection failure"))).toBe("storage unavailable");
  });
});
