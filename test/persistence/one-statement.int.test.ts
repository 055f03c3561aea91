/**
 * A small group commit on the SQLite write worker is one statement (src/persistence/one-statement.ts): the
 * rows it writes are those of the statement-by-statement transaction, a stale or failing write leaves
 * nothing of its batch, and the outbox seqs it gives go on from the table's, never reused.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { AggregateWrite, Database, OutboxRow } from "../../src/persistence/index.js";
import { SqliteWriteWorker } from "../../src/persistence/sqlite-write-worker.js";
import { partitionOf } from "../../src/cluster/partition.js";
import { timerOp } from "../../src/timers/index.js";
import { profileWrite, useSqliteDatabase } from "../support/index.js";

let db: Database;
useSqliteDatabase((d) => (db = d));

let worker: SqliteWriteWorker | undefined;
afterEach(async () => {
  await worker?.close();
  worker = undefined;
});

let ids = 0;
const eventId = () => `0190a0e0-0000-7000-8000-${String(++ids).padStart(12, "0")}`;

/** A write of `id` at `version` with `events` UserProfileUpdated events (versions up to `version`), an idempotency key and a trace context. */
function richWrite(id: string, version: number, events: number): AggregateWrite {
  const base = profileWrite(id, version, eventId());
  const first = version - events + 1;
  return {
    ...base,
    baseVersion: first - 1,
    state: { name: `${id} at ${version}`, tags: ["a", "b"] },
    events: Array.from({ length: events }, (_, i) => ({ ...base.events[0]!, event_id: i === 0 ? base.events[0]!.event_id : eventId(), aggregate_version: first + i, payload: { n: i, id } })),
    idempotency: { key: `key-${id}-${version}`, fingerprint: "f".repeat(64), reply: { ok: true, version } },
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  };
}

/** What a batch left in the tables for `aggregates`, seqs aside: the same whichever way it was written. */
async function stored(aggregates: string[]) {
  const marks = aggregates.map(() => "?").join(",");
  const rows = async (sql: string) => db.execute<Record<string, unknown>[]>(sql, aggregates, "all");
  const snapshots = await rows(`select aggregate_id, version, base_version, state, updated_on from nerve_snapshots where aggregate_id in (${marks}) order by aggregate_id`);
  const events = await rows(`select event_id, event_type, event_version, occurred_on, aggregate_type, aggregate_version, correlation_id, causation_id, payload from nerve_events where aggregate_id in (${marks}) order by aggregate_id, aggregate_version`);
  const outbox = await rows(`select event_id, aggregate_type, aggregate_version, subject, event_type, event_version, hex(body) as body, aggregate_id, partition_no, traceparent, tracestate from nerve_outbox where aggregate_id in (${marks}) order by aggregate_id, aggregate_version`);
  const keys = await rows(`select aggregate_id, key, fingerprint, reply, created_on from nerve_idempotency where aggregate_id in (${marks}) order by aggregate_id`);
  const strip = (r: Record<string, unknown>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "string" ? v.replace(/\b(one|many)-/g, "") : v]));
  return { snapshots: snapshots.map(strip), events: events.map((e) => ({ ...e, event_id: undefined })), outbox: outbox.map(({ aggregate_id, partition_no, ...o }) => ({ ...strip(o), event_id: undefined, partitionOfId: partition_no === partitionOf(String(aggregate_id)) })), keys: keys.map(strip) };
}

const eventCount = async (id: string) => Number((await db.execute<{ n: number }>("select count(*) as n from nerve_events where aggregate_id = ?", [id], "get")).n);
const outboxSeqs = async () => (await db.execute<{ seq: number }[]>("select seq from nerve_outbox order by seq", [], "all")).map((r) => Number(r.seq));

/** The same writes under another id prefix (fresh event ids), for writing twice. */
function renamed(writes: AggregateWrite[], prefix: string): AggregateWrite[] {
  return writes.map((w) => {
    const id = `${prefix}-${w.aggregateId}`;
    return { ...w, aggregateId: id, events: w.events.map((e) => ({ ...e, event_id: eventId(), subject: e.subject.replace(new RegExp(`\\.${w.aggregateId}$`), `.${id}`) })) };
  });
}

describe("a small group commit on the write worker", () => {
  it("is one statement that writes the rows the statement-by-statement transaction writes, and deletes the published rows", async () => {
    worker = new SqliteWriteWorker(db, () => undefined);
    const writes = [richWrite("a", 1, 1), richWrite("b", 3, 2), { ...profileWrite("c", 1, eventId()), events: [] }];
    // A batch of more than 64 rows goes statement by statement: the same writes with 70 others.
    const filler = Array.from({ length: 35 }, (_, i) => profileWrite(`filler-${i}`, 1, eventId()));
    const many = await worker.commit([...renamed(writes, "many"), ...filler]);
    expect(await worker.sharedTransactions()).toMatchObject({ oneStatement: 0 });
    const published = many.filter((r) => r.aggregate_id.startsWith("filler-")).slice(0, 5).map((r) => r.seq);

    const one = await worker.commit(renamed(writes, "one"), published);
    expect(await worker.sharedTransactions()).toMatchObject({ oneStatement: 1 });
    expect(await stored(["one-a", "one-b", "one-c"])).toEqual(await stored(["many-a", "many-b", "many-c"]));
    expect((await stored(["one-a", "one-b"])).events).toHaveLength(3);
    // The seqs it answered are the rows' own, after every seq before, and the published rows are gone.
    const seqs = await outboxSeqs();
    expect(one.map((r) => r.seq)).toEqual(seqs.slice(-3));
    expect(Math.min(...one.map((r) => r.seq))).toBe(Math.max(...many.map((r) => r.seq)) + 1);
    for (const s of published) expect(seqs).not.toContain(s);
    expect(seqs).toHaveLength(many.length - published.length + one.length);
  }, 30_000);

  it("leaves nothing of a batch with a stale or failing write, and numbers on from where the table is", async () => {
    worker = new SqliteWriteWorker(db, () => undefined);
    const first = await worker.commit([profileWrite("s1", 1, eventId())]);
    const before = await outboxSeqs();
    // s1 is at version 1: a second write from base 0 is stale; s2's write beside it goes too, and the delete.
    await expect(worker.commit([profileWrite("s2", 1, eventId()), profileWrite("s1", 1, eventId())], [first[0]!.seq])).rejects.toMatchObject({ name: "StaleWriteError" });
    // An event id that is taken fails the whole statement the same way.
    const taken = first[0]!.event_id;
    await expect(worker.commit([profileWrite("s3", 1, eventId()), profileWrite("s4", 1, taken)])).rejects.toMatchObject({ code: expect.stringContaining("SQLITE_CONSTRAINT") });
    expect(await outboxSeqs()).toEqual(before);
    expect(await db.execute("select aggregate_id from nerve_snapshots where aggregate_id in ('s2', 's3', 's4')", [], "all")).toEqual([]);
    expect(await db.execute("select aggregate_id from nerve_events where aggregate_id in ('s2', 's3', 's4')", [], "all")).toEqual([]);

    // Every row deleted (all published) and the worker started again: seqs are still never given twice.
    const next = await worker.commit([profileWrite("s2", 1, eventId())], await outboxSeqs());
    expect(next[0]!.seq).toBe(Math.max(...before) + 1);
    await worker.commit([], await outboxSeqs());
    expect(await outboxSeqs()).toEqual([]);
    await worker.close();
    worker = new SqliteWriteWorker(db, () => undefined);
    const again: OutboxRow[] = await worker.commit([profileWrite("s3", 1, eventId())]);
    expect(again[0]!.seq).toBe(next[0]!.seq + 1);
    expect(await worker.sharedTransactions()).toMatchObject({ oneStatement: 1 });
  }, 30_000);

  it("numbers a large group commit's outbox rows itself, each seq its event's row, and numbers on after a stale one from where the table is", async () => {
    worker = new SqliteWriteWorker(db, () => undefined, undefined, "inline");
    const big = (prefix: string, version = 1) => Array.from({ length: 40 }, (_, i) => profileWrite(`${prefix}-${i}`, version, eventId()));
    const rowOf = async (seq: number) => db.execute<{ event_id: string; aggregate_id: string } | undefined>("select event_id, aggregate_id from nerve_outbox where seq = ?", [seq], "get");
    const first = await worker.commit(big("L"));
    expect(await worker.sharedTransactions()).toMatchObject({ oneStatement: 0 });
    // Consecutive, and each the row of the event it was answered for.
    expect(first.map((r) => r.seq)).toEqual(first.map((_, i) => first[0]!.seq + i));
    for (const r of first) expect(await rowOf(r.seq)).toEqual({ event_id: r.event_id, aggregate_id: r.aggregate_id });
    // A stale write in a large batch: nothing of it stays (the changes counted), the delete riding along neither.
    const published = first.slice(0, 10).map((r) => r.seq);
    const before = await outboxSeqs();
    await expect(worker.commit([...big("M"), profileWrite("L-7", 1, eventId())], published)).rejects.toMatchObject({ name: "StaleWriteError" });
    expect(await outboxSeqs()).toEqual(before);
    expect(await db.execute("select aggregate_id from nerve_snapshots where aggregate_id like 'M-%'", [], "all")).toEqual([]);
    // After a transaction that failed the engine reads the table again: a row written beside it meanwhile (the
    // main connection writes outbox rows only where there is no engine) is never given again.
    await db.execute("insert into nerve_outbox (event_id, aggregate_type, aggregate_id, aggregate_version, subject, event_type, event_version, body, partition_no) values (?, 'User', 'beside', 1, 'events.users.UserProfileUpdated.beside', 'UserProfileUpdated', 1, x'00', 0)", [eventId()], "run");
    const beside = Math.max(...(await outboxSeqs()));
    expect(beside).toBe(first.at(-1)!.seq + 1);
    await expect(worker.commit([profileWrite("L-3", 1, eventId())])).rejects.toMatchObject({ name: "StaleWriteError" });
    const next = await worker.commit(big("L", 2), published);
    expect(next[0]!.seq).toBe(beside + 1);
    for (const r of next) expect(await rowOf(r.seq)).toEqual({ event_id: r.event_id, aggregate_id: r.aggregate_id });
    for (const s of published) expect(await rowOf(s)).toBeUndefined();
  }, 30_000);

  it("runs a write's further statements (a timer, an e-mail's rows) in it through triggers of their own, with their failures", async () => {
    worker = new SqliteWriteWorker(db, () => undefined);
    const expiry = { aggregateType: "AccessRecord", kind: "expiry" };
    const email = (address: string, id: string) => ({ sql: "insert into user_emails (email, user_id) values (?, ?)", params: [address, id] });
    const withExtra = (id: string, version: number, extra: AggregateWrite["extra"]): AggregateWrite => ({ ...profileWrite(id, version, eventId()), extra });
    await worker.commit([withExtra("x1", 1, [email("x1@example.com", "x1"), timerOp(expiry, "x1", "2027-01-01T00:00:00.000Z")]), withExtra("x2", 1, [timerOp(expiry, "x2", "2027-02-01T00:00:00.000Z")])]);
    await worker.commit([withExtra("x1", 2, [{ sql: "delete from user_emails where email = ? and user_id = ?", params: ["x1@example.com", "x1"] }, email("x1+new@example.com", "x1"), timerOp(expiry, "x1", "2027-03-01T00:00:00.000Z")]), withExtra("x2", 2, [timerOp(expiry, "x2", null)])]);
    expect(await worker.sharedTransactions()).toMatchObject({ oneStatement: 2 });
    expect(await db.execute("select email, user_id from user_emails where user_id in ('x1', 'x2') order by email", [], "all")).toEqual([{ email: "x1+new@example.com", user_id: "x1" }]);
    expect(await db.execute("select aggregate_id, kind, due_at, partition_no from nerve_timers where aggregate_id in ('x1', 'x2')", [], "all")).toEqual([
      { aggregate_id: "x1", kind: "expiry", due_at: "2027-03-01T00:00:00.000Z", partition_no: partitionOf("x1") },
    ]);

    // An e-mail that is taken fails the batch with the constraint's own error, and nothing of it stays.
    const before = await outboxSeqs();
    await expect(worker.commit([withExtra("x3", 1, [timerOp(expiry, "x3", "2027-04-01T00:00:00.000Z")]), withExtra("x4", 1, [email("x1+new@example.com", "x4")])])).rejects.toMatchObject({
      code: expect.stringContaining("SQLITE_CONSTRAINT"),
      message: expect.stringContaining("user_emails.email"),
    });
    expect(await outboxSeqs()).toEqual(before);
    expect(await db.execute("select aggregate_id from nerve_timers where aggregate_id = 'x3'", [], "all")).toEqual([]);
    expect(await worker.sharedTransactions()).toMatchObject({ oneStatement: 2 });

    // A statement with a literal in it gets no trigger: its batch goes statement by statement, as before.
    await worker.commit([withExtra("x5", 1, [{ sql: "insert into user_emails (email, user_id) values (? || '@example.com', ?)", params: ["x5", "x5"] }])]);
    expect(await worker.sharedTransactions()).toMatchObject({ oneStatement: 2 });
    expect(await db.execute("select email from user_emails where user_id = 'x5'", [], "all")).toEqual([{ email: "x5@example.com" }]);
    expect(await eventCount("x5")).toBe(1);
  }, 30_000);
});
