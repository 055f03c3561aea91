/** Helpers of the end-to-end story: commands and queries that must succeed, and bounded waits for read models. */
import { expect, vi } from "vitest";
import { QueryDefinitions, type QueryType } from "../../contracts/index.js";
import { command, query, type TestNerve } from "../support/nerve.js";

/** How long a read model may take to catch up before a test fails. */
export const CATCH_UP_MS = 15_000;

/** Retries `check` (assertions) until it passes or CATCH_UP_MS runs out: polling, never a blind sleep. */
export function eventually<T>(check: () => Promise<T> | T, timeout = CATCH_UP_MS): Promise<T> {
  return vi.waitFor(check, { timeout, interval: 50 });
}

/** Sends a command that must succeed; returns its reply body. */
export async function ok(t: TestNerve, context: string, type: string, id: string, body: unknown = {}, headers?: Record<string, string>) {
  const r = await command(t.client, context, type, id, body, headers ? { headers } : {});
  expect(r.body, `${type} ${id}: ${JSON.stringify(r.body.error)}`).toMatchObject({ ok: true });
  return r.body;
}

/** Sends a command that must fail with `code`; returns the error. */
export async function refused(t: TestNerve, context: string, type: string, id: string, body: unknown, code: string) {
  const r = await command(t.client, context, type, id, body);
  expect(r.body.ok, `${type} ${id} should fail with ${code}`).toBe(false);
  expect(r.body.error.code, r.body.error.message).toBe(code);
  return r.body.error;
}

/** Runs a query that must succeed and returns its result, checked against the contract's result schema. */
export async function ask<Q extends QueryType>(t: TestNerve, type: Q, body: unknown): Promise<any> {
  const def = QueryDefinitions[type];
  const r = await query(t.client, def.context, type, body);
  expect(r.body, `${type}: ${JSON.stringify(r.body.error)}`).toMatchObject({ ok: true });
  const parsed = def.result.safeParse(r.body.result);
  expect(parsed.success, `${type} result breaks the contract: ${parsed.error?.message}`).toBe(true);
  return r.body.result;
}

/** The event types of an aggregate's history, in order. */
export async function historyOf(t: TestNerve, aggregate_type: string, aggregate_id: string): Promise<any[]> {
  return (await ask(t, "History", { aggregate_type, aggregate_id })).events;
}

/** Rows of a read-model table, as a comparable dump. */
export async function dump(t: TestNerve, sql: string): Promise<unknown[]> {
  return t.nerve.db.execute(sql, [], "all");
}

/**
 * Waits until every committed event is in its stream (the outbox empty) and no consumer has pending or
 * unacknowledged events. Without the first, a check right after the last reply could pass before the relay had
 * published the last events: nothing pending yet, and a read model one update behind (seen once in CI, stop 59).
 */
export async function caughtUp(t: TestNerve, consumers?: string[]): Promise<void> {
  await eventually(async () => {
    expect(await t.nerve.bus.repo.outboxSize(), "committed events not yet in their streams").toBe(0);
    const behind = (await t.nerve.consumers.lag()).filter((l) => (!consumers || consumers.includes(l.consumer)) && l.pending + l.ackPending > 0);
    expect(behind, JSON.stringify({ behind, stats: Object.fromEntries([...t.nerve.consumers.runners].map(([n, r]) => [n, r.stats])) })).toEqual([]);
  });
}
