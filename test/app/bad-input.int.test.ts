/**
 * Bad input never takes Nerve down (issue #10). Each case is a finding of the issue: one accepted
 * command with a NUL in a title ended the process about 20 s later; SearchCatalog and a NUL in the
 * Idempotency-Key header answered `internal`. Now U+0000 and lone surrogates are refused at the edge
 * (CONTRACT.md §1 "text"), every other character is stored and returned exactly, and an event that
 * breaks the contract in the stream (written before the fix, or by another producer) is parked in
 * the dead letters — even while the dead letters cannot be stored — with the service alive throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Headers, encodeMsgPack } from "../../contracts/index.js";
import { DeadLetters, consumerEntities } from "../../src/consumers/index.js";
import { openDatabase } from "../../src/persistence/index.js";
import { readModelEntities } from "../../src/projections/index.js";
import { command, query, request, startNatsServer, startServiceProcess, startTestNerve, tempSqlitePath, until, type TestNerve } from "../support/index.js";
import { envelope } from "../projections/fixtures.js";


describe("hostile text at the edge", () => {
  let t: TestNerve;
  beforeAll(async () => {
    t = await startTestNerve();
    expect((await command(t.client, "policies", "CreatePolicy", "pol-bad", { name: "Standard", type: "standard", refund_period_days: 14 })).body.ok).toBe(true);
    expect((await command(t.client, "courses", "CreateCourse", "course-bad", { title: "Safe", instructor_id: "i1", policy_id: "pol-bad" })).body.ok).toBe(true);
  });
  afterAll(async () => {
    await t?.close();
  });

  it("refuses U+0000 in UpdateCourse's title as invalid_request and changes nothing (it used to end the process)", async () => {
    for (const json of [false, true]) {
      const r = await command(t.client, "courses", "UpdateCourse", "course-bad", { title: "a\u0000b" }, { json });
      expect(r.body.error).toMatchObject({ code: "invalid_request", message: expect.stringContaining("title must be valid Unicode without U+0000") });
      expect(r.headers["Nats-Service-Error-Code"]).toBe("400");
    }
    expect((await query(t.client, "courses", "GetCourse", { course_id: "course-bad" })).body.result).toMatchObject({ title: "Safe", version: 1 });
  });

  it("refuses U+0000 in RegisterUser's name and stores nothing for the new id", async () => {
    const r = await command(t.client, "users", "RegisterUser", "u-nul", { email: "nul@example.com", name: "\u0000" });
    expect(r.body.error.code).toBe("invalid_request");
    expect((await query(t.client, "users", "GetUser", { user_id: "u-nul" })).body.error.code).toBe("not_found");
    expect((await query(t.client, "audit", "History", { aggregate_type: "User", aggregate_id: "u-nul" })).body.result.events).toEqual([]);
    // The address was never taken.
    expect((await command(t.client, "users", "RegisterUser", "u-ok", { email: "nul@example.com", name: "Ok" })).body.ok).toBe(true);
  });

  it("refuses a lone surrogate (not Unicode) sent as a JSON escape", async () => {
    const raw = new TextEncoder().encode('{"refund_reason":"bad \\ud800 half"}');
    const r = await request(t.client, "cmd.orders.RefundOrder.o-x", undefined, { json: true, raw });
    expect(r.body.error).toMatchObject({ code: "invalid_request", message: expect.stringContaining("refund_reason") });
  });

  it("refuses a body nested 30,000 deep in either encoding without a stack overflow", async () => {
    const depth = 30_000;
    const json = new TextEncoder().encode(`{"title":${"[".repeat(depth)}${"]".repeat(depth)}}`);
    const r1 = await request(t.client, "cmd.courses.UpdateCourse.course-bad", undefined, { json: true, raw: json });
    expect(r1.body.error.code).toBe("invalid_request");
    const msgpack = new Uint8Array([0x81, 0xa5, ...new TextEncoder().encode("title"), ...new Uint8Array(depth).fill(0x91), 0xc0]);
    const r2 = await request(t.client, "cmd.courses.UpdateCourse.course-bad", undefined, { raw: msgpack });
    expect(r2.body.error.code).toBe("invalid_request");
  });

  it("answers SearchCatalog with a NUL in its text invalid_request, not internal", async () => {
    const r = await query(t.client, "courses", "SearchCatalog", { text: "a\u0000b" });
    expect(r.body.error.code).toBe("invalid_request");
    expect((await query(t.client, "courses", "SearchCatalog", { text: "Safe" })).body.ok).toBe(true);
  });

  it("answers a NUL in the Idempotency-Key, Correlation-Id or Causation-Id header invalid_request, not internal", async () => {
    for (const name of ["Idempotency-Key", "Correlation-Id", "Causation-Id"]) {
      const r = await command(t.client, "courses", "UpdateCourse", "course-bad", { description: "x" }, { headers: { [name]: "key\u0000tail" } });
      expect(r.body.error, name).toMatchObject({ code: "invalid_request", message: expect.stringContaining(name) });
    }
    expect((await query(t.client, "courses", "GetCourse", { course_id: "course-bad" })).body.result.version).toBe(1);
  });

  it("stores and returns every other character exactly: ends' whitespace, control characters, astral ones", async () => {
    const title = "  Kurs für Ärzte 📚 — 課程\t";
    const description = "line\nbreak \u0001\u001f\u007f \u200b zero-width, \ud83d\ude00 pair";
    const r = await command(t.client, "courses", "UpdateCourse", "course-bad", { title, description }, { json: true });
    expect(r.body.ok).toBe(true);
    expect((await query(t.client, "courses", "GetCourse", { course_id: "course-bad" })).body.result).toMatchObject({ title, description });
    expect(await t.nerve.relay.flush(5000)).toBe(true);
    await until("the catalog has it", async () => (await query(t.client, "courses", "SearchCatalog", { text: "Ärzte" })).body.result.items.length === 1, 20_000);
    expect((await query(t.client, "courses", "SearchCatalog", { text: "Ärzte" })).body.result.items[0]).toMatchObject({ title, description });
  });
});

describe("a poison event in the stream, while its dead letters cannot be stored (the real service process)", () => {
  let nc: NatsConnection | undefined;
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  it("parks the event, retries the dead letter until it can be stored, and the process never dies", async () => {
    const nats = await startNatsServer();
    cleanup.push(() => nats.stop());
    const file = await tempSqlitePath();
    cleanup.push(() => file.cleanup());
    const svc = await startServiceProcess({ env: { NATS_URL: nats.url, NERVE_DB: `sqlite:${file.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "warn" } });
    cleanup.push(() => svc.kill9());
    nc = await connect({ servers: nats.url, noAsyncTraces: true });
    cleanup.push(() => nc!.close());
    const db = await openDatabase({ url: `sqlite:${file.path}`, entities: [...consumerEntities, ...readModelEntities] });
    cleanup.push(() => db.close());

    await db.execute("drop table consumer_dead_letters", [], "run");
    // As an event written before the fix (or by another producer) would be: a NUL in the title.
    const poison = { ...envelope("CourseCreated", "c-poison", 1, { course_id: "c-poison", title: "ok", instructor_id: "i1", policy_id: "p1" }), payload: { course_id: "c-poison", title: "a\u0000b", instructor_id: "i1", policy_id: "p1" } };
    const h = natsHeaders();
    h.set(Headers.EventType, "CourseCreated");
    await jetstream(nc).publish("events.courses.CourseCreated.c-poison", encodeMsgPack(poison), { headers: h });

    // The process used to exit at the dead-letter step: the consumer retried the event (DEFAULT_RETRY,
    // 200 ms … 15 s: about 20 s in all), parked it on the last attempt, failed to store the letter and died.
    // A poison event is parked at once now, so that step comes within a second, not after 20 s: wait until
    // both consumers that take the event (catalog, search) have failed to store its letter and retried it
    // (200 ms later), the process answering a ping all along.
    const failedLetters = (consumer: string) => svc.output().split("\n").filter((l) => l.includes("could not store a dead letter; will retry") && l.includes(`dead letters of ${consumer}`)).length;
    await until("each consumer's dead letter failed to store twice", async () => {
      expect((await nc!.request("$SRV.PING.nerve", new Uint8Array(), { timeout: 2000 })).data.length).toBeGreaterThan(0);
      return failedLetters("catalog") >= 2 && failedLetters("search") >= 2;
    }, 30_000);
    expect((await nc.request("$SRV.PING.nerve", new Uint8Array(), { timeout: 2000 })).data.length).toBeGreaterThan(0);
    expect(svc.exited).toBe(false);

    await db.orm.schema.updateSchema({ safe: true }); // the dead letters' table is back
    const deadLetters = new DeadLetters(db);
    // Each consumer that takes CourseCreated parks it in its own time: wait for these two by name.
    await until("catalog and search park the event", async () => {
      const parkedBy = new Set((await deadLetters.list()).map((d) => d.consumer));
      return parkedBy.has("catalog") && parkedBy.has("search");
    }, 30_000);
    const parked = await deadLetters.list("catalog");
    expect(parked[0]).toMatchObject({ event_id: poison.event_id, event_type: "CourseCreated", envelope: { payload: { title: "a\u0000b" } }, reason: expect.stringContaining("U+0000") });

    // And the service still works end to end.
    expect((await command(nc, "policies", "CreatePolicy", "pol-after", { name: "After", type: "standard", refund_period_days: 1 })).body.ok).toBe(true);
    const jsm = await jetstreamManager(nc);
    // The reply comes after the commit; the relay publishes the event just after it, so wait for it there.
    await until("the new policy's event is in its stream", async () => (await jsm.streams.info("EVENTS_POLICIES")).state.messages >= 1, 10_000);
    expect(await svc.stop()).toBe(0);
  });
});
