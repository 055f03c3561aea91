/**
 * Numbers a request may carry beyond a 32-bit column: History's after_version (nerve_events.aggregate_version),
 * the dead letters' after and id (consumer_dead_letters.id) are `integer`, which PostgreSQL holds up to
 * 2^31 − 1. Bound as they came, 2^31 was `internal` on PostgreSQL ("value out of range for type integer",
 * the SQL in the admin's message, an error logged per request) where SQLite answered. Now both databases
 * answer alike: a version or id that large cannot exist. Behind that, PostgreSQL's 22003 is the request's
 * `invalid_request`, never `internal`, and its message holds no SQL.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminSubjects } from "../../src/api/index.js";
import { captureLog, command, postgresAvailable, query, request, startTestNerve, tempPostgres, type CapturedLog, type TempPostgres, type TestNerve } from "../support/index.js";

const pgAvailable = await postgresAvailable();

let pg: TempPostgres | undefined;
const databases = [
  { name: "SQLite", available: true, env: async () => ({}) },
  { name: "PostgreSQL", available: pgAvailable, env: async () => ({ NERVE_DB: (pg = await tempPostgres()).url }) },
];

const LARGEST = 2 ** 31 - 1;

describe.each(databases)("numbers past a 32-bit column on $name", ({ name, available, env }) => {
  let t: TestNerve;
  let log: CapturedLog;
  const admin = (subject: string, body: unknown) => request(t.client, subject, body, { json: true });

  beforeAll(async () => {
    if (!available) return;
    log = captureLog("warn");
    t = await startTestNerve(await env(), { logger: log.logger });
    expect((await command(t.client, "users", "RegisterUser", "h1", { email: "h1@example.com", name: "H" })).body.ok).toBe(true);
  });
  afterAll(async () => {
    await t?.close();
    await pg?.drop();
    pg = undefined;
  });

  it.skipIf(!available)("answers History after_version past 2^31 − 1 with the empty last page, as any version past the last", async () => {
    for (const after_version of [5, LARGEST, LARGEST + 1, Number.MAX_SAFE_INTEGER]) {
      for (const page of [{}, { limit: 3 }]) {
        const r = await query(t.client, "audit", "History", { aggregate_type: "User", aggregate_id: "h1", after_version, ...page });
        expect(r.body, `${after_version} ${JSON.stringify(page)}`).toEqual({ ok: true, result: { events: [], next_after_version: null } });
      }
    }
    expect(log.errors()).toEqual([]);
  });

  it.skipIf(!available)("answers dead-letters after 2^31 − 1 with an empty page, and retry-dead-letter of such an id not_found", async () => {
    for (const after of [LARGEST, LARGEST + 1, Number.MAX_SAFE_INTEGER]) {
      expect((await admin(AdminSubjects.DeadLetters, { after })).body, String(after)).toEqual({ ok: true, result: { items: [], next: null } });
      expect((await admin(AdminSubjects.DeadLetters, { consumer: "audit", after })).body, String(after)).toEqual({ ok: true, result: { items: [], next: null } });
    }
    for (const id of [LARGEST, LARGEST + 1, Number.MAX_SAFE_INTEGER]) {
      expect((await admin(AdminSubjects.RetryDeadLetter, { id })).body, String(id)).toEqual({ ok: false, error: { code: "not_found", message: `no dead letter ${id}` } });
    }
    expect(log.errors()).toEqual([]);
  });

  // The columns made narrower than the bounds above know: what PostgreSQL then refuses is the request's.
  if (name === "PostgreSQL") it.skipIf(!available)("answers PostgreSQL's numeric_value_out_of_range invalid_request, naming no SQL, logging nothing", async () => {
    await t.nerve.db.execute("alter table nerve_events alter column aggregate_version type smallint", [], "run");
    await t.nerve.db.execute("alter table consumer_dead_letters alter column id type smallint", [], "run");
    const answers = [
      (await query(t.client, "audit", "History", { aggregate_type: "User", aggregate_id: "h1", after_version: 40_000 })).body,
      (await query(t.client, "audit", "History", { aggregate_type: "User", aggregate_id: "h1", after_version: 40_000 }, { json: true })).body,
      (await admin(AdminSubjects.DeadLetters, { after: 40_000 })).body,
      (await admin(AdminSubjects.RetryDeadLetter, { id: 40_000 })).body,
    ];
    for (const body of answers) {
      expect(body.ok, JSON.stringify(body)).toBe(false);
      expect(body.error.code, JSON.stringify(body)).toBe("invalid_request");
      expect(body.error.message).not.toMatch(/select|nerve_events|consumer_dead_letters|smallint|integer/i);
    }
    expect(log.errors()).toEqual([]);
  });
});
