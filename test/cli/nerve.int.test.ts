import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command, freePort, query, startTestNerve, type TestNerve } from "../support/index.js";
import { nerve, runCli, spawnCli, startInProcess } from "./support.js";

// Child processes prove exit codes, streams and Ctrl-C; the other cases run the same runNerve in this process.
const NATS_CONF = join(import.meta.dirname, "..", "..", "nats.conf");
let t: TestNerve;
// As after a plain `npm start` that started nats-server with nats.conf: NATS_URL only, no credentials.
const asStart = () => ({ NATS_URL: t.nats.url });

beforeAll(async () => {
  t = await startTestNerve({}, { natsConf: NATS_CONF });
});
afterAll(async () => {
  await t?.close();
});

const deadLetter = (aggregateId: string) => {
  const event_id = "0190a0b0-0000-7000-8000-0000000000bb";
  const envelope = {
    event_id,
    event_type: "UserRegistered",
    event_version: 1,
    occurred_on: new Date().toISOString(),
    aggregate_type: "User",
    aggregate_id: aggregateId,
    aggregate_version: 1,
    correlation_id: `c-${aggregateId}`,
    causation_id: null,
    payload: { user_id: aggregateId, email: `${aggregateId}@example.com`, name: "D" },
  };
  return { consumer: "notifications", stream: "EVENTS_USERS", stream_seq: 1, event_id, event_type: "UserRegistered", envelope: JSON.stringify(envelope), reason: "test", attempts: 5 };
};

describe("nerve: connecting", () => {
  it("connects as npm start does (no credentials set: nats.conf's development user; was Authorization Violation), and says what is wrong when it cannot", async () => {
    const port = await freePort();
    const [asStarted, none, refused, production] = await Promise.all([
      runCli(asStart(), "lag"),
      runCli({ NATS_URL: `nats://127.0.0.1:${port}` }, "status"),
      runCli({ ...asStart(), NATS_USER: "nerve", NATS_PASSWORD: "wrong" }, "status"),
      nerve({ ...asStart(), NODE_ENV: "production", NERVE_JWT_SECRET: "a-production-secret-of-length" }, "lag"),
    ]);
    expect(asStarted.out).not.toContain("Authorization Violation");
    expect(asStarted.code, asStarted.out).toBe(0);
    expect(asStarted.stdout).toMatch(/notifications\s+EVENTS_USERS/);
    expect(none.code).toBe(3);
    expect(none.stderr).toContain(`no NATS server answers at NATS_URL=nats://127.0.0.1:${port}`);
    expect(none.stderr).toContain("npm start");
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(`NATS at ${t.nats.url} refused user "nerve" (NATS_USER, NATS_PASSWORD)`);
    expect(production.code).toBe(3);
    expect(production.stderr).toContain("asks for credentials: set NATS_USER and NATS_PASSWORD, or NATS_CREDS");
  });
});

describe("nerve: another user's inbox", () => {
  it("sends and reads history with the client user's credentials given its inbox prefix (NATS_INBOX_PREFIX); a prefix that is not one is exit 2", async () => {
    const client = { ...asStart(), NATS_USER: "client", NATS_PASSWORD: "client-dev" };
    const sent = await runCli({ ...client, NATS_INBOX_PREFIX: "_INBOX" }, "send", "users", "RegisterUser", "inbox1", '{"email":"inbox1@example.com","name":"In"}');
    expect(sent.code, sent.out).toBe(0);
    expect(JSON.parse(sent.stdout)).toMatchObject({ ok: true, aggregate_id: "inbox1", aggregate_version: 1 });
    const [history, own, bad] = await Promise.all([
      runCli({ ...client, NATS_INBOX_PREFIX: "_INBOX" }, "history", "users", "inbox1"),
      // The service's own prefix, which the client user may not read: no reply reaches it.
      runCli(client, "send", "users", "UpdateUserProfile", "inbox1", '{"profile_data":{"a":1}}', "--timeout", "1"),
      runCli({ ...client, NATS_INBOX_PREFIX: "_INBOX.>" }, "history", "users", "inbox1"),
    ]);
    expect(history.code, history.out).toBe(0);
    expect(history.stdout).toContain("UserRegistered");
    expect(own.code).not.toBe(0);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("NATS_INBOX_PREFIX: a subject prefix");
  });
});

describe("nerve: help and unknown names", () => {
  it("prints the command list and each command's help; exits 2 without a command", async () => {
    const [sendHelp, all, statusHelp, bare] = await Promise.all([runCli({}, "send", "--help"), nerve({}, "--help"), nerve({}, "help", "status"), nerve({})]);
    expect(sendHelp.code).toBe(0);
    expect(sendHelp.stdout).toContain("usage: npm run nerve -- send <context> <Command> <id> [json] [options]");
    expect(sendHelp.stdout).toContain("--idempotency-key <key>");
    expect(all.code).toBe(0);
    for (const c of ["status", "tail [filter]", "history <context> <aggregate_id>", "send <context> <Command> <id> [json]", "replay <consumer>", "lag", "dead-letters", "retry-dead-letter <id>"]) expect(all.stdout).toContain(c);
    expect(all.stdout).toContain("exit codes");
    expect(statusHelp.code).toBe(0);
    expect(statusHelp.stdout).toContain("Unhealthy (exit code 1)");
    expect(statusHelp.stdout).toContain("--max-lag <events>");
    expect(bare.code).toBe(2);
    expect(bare.stdout).toContain("commands:");
  });

  it("refuses unknown commands, options, contexts, command types and filters with exit 2, listing the known ones", async () => {
    const env = asStart();
    const runs = await Promise.all([
      nerve(env, "frobnicate"),
      nerve(env, "status", "--frob"),
      nerve(env, "send", "shop", "RegisterUser", "u1"),
      nerve(env, "send", "orders", "RegisterUser", "o1"),
      nerve(env, "history", "users", "not a valid id"),
      nerve(env, "tail", "events.shop.>"),
      nerve(env, "retry-dead-letter", "first"),
      nerve(env, "send", "users", "RegisterUser", "u1", "{}", "--timeout", "0"),
    ]);
    for (const r of runs) expect(r.code, r.out).toBe(2);
    // Consumers are the service's to know: it refuses an unknown one, listing its own (an error reply: exit 1).
    const consumer = await nerve(env, "dead-letters", "nobody");
    expect(consumer.code).toBe(1);
    expect(consumer.stderr).toMatch(/^not_found: no consumer nobody; known: .*notifications/);
    const [cmd, opt, ctx, type, id, filter, letter, timeout] = runs.map((r) => r.stderr);
    // nats.js would have waited its default second for a timeout of 0.
    expect(timeout).toContain('--timeout must be at least 0.001 and at most 2147483 seconds, not "0"');
    expect(cmd).toContain('unknown command "frobnicate"; known: status, tail, history, send, lag, replay, dead-letters, retry-dead-letter');
    expect(opt).toContain("status: Unknown option '--frob'");
    expect(ctx).toContain('unknown context "shop"; known: users, courses, policies, orders, access');
    expect(type).toContain('unknown command of orders "RegisterUser"; known: PlaceOrder, MarkOrderPaid, RefundOrder, CancelOrder');
    expect(id).toContain("an aggregate id matches");
    expect(filter).toContain('unknown context "shop"');
    expect(letter).toContain("a dead letter's id is a positive integer");
  });

  it("checks the arguments before connecting: a bad one is exit 2 with its message even when no NATS server answers (was 3, no server)", async () => {
    const down = { NATS_URL: `nats://127.0.0.1:${await freePort()}` };
    const cases: [string[], string][] = [
      [["send", "shop", "RegisterUser", "u1"], 'unknown context "shop"'],
      [["send", "users", "RegisterUser", "u1", "{not json"], "the body is not JSON"],
      [["send", "users", "RegisterUser", "u1", "{}", "--timeout", "0"], "--timeout must be at least 0.001 and at most 2147483 seconds"],
      // setTimeout fires at once past 2^31 - 1 ms: "no answer within 2200000 s" at once, the command maybe applied.
      [["send", "users", "RegisterUser", "u1", "{}", "--timeout", "2200000"], '--timeout must be at least 0.001 and at most 2147483 seconds, not "2200000"'],
      // nats.js refused it with a stack trace, exit 1.
      [["send", "users", "RegisterUser", "u1", "{}", "--timeout", "0.0001"], "--timeout must be at least 0.001"],
      [["send", "users", "RegisterUser", "u1", "{}", "--idempotency-key", "a\nb"], "--idempotency-key is 1 to 128 printable characters"],
      [["send", "users", "RegisterUser", "u1", "{}", "--correlation-id", "k".repeat(129)], "--correlation-id is 1 to 128 printable characters"],
      // Number read 0x10 as 16, 1e300 went to the server and came back invalid_request, exit 1.
      [["dead-letters", "--limit", "0x10"], "--limit must be a number ≥ 0 in plain decimal"],
      [["dead-letters", "--after", "1e300"], "--after must be a number ≥ 0 in plain decimal"],
      [["status", "--max-lag", "0b11"], "--max-lag must be a number ≥ 0 in plain decimal"],
      // nats.js refused a fraction, and a wait past 2^31 - 1 ms fired at once: "no instance answered", exit 1.
      [["status", "--wait", "0.5"], "--wait is whole milliseconds from 1 to 2147483647"],
      [["status", "--wait", "10000000000"], "--wait is whole milliseconds from 1 to 2147483647"],
      [["status", "--wait", "0"], "--wait is whole milliseconds from 1 to 2147483647"],
      // Three tokens match no four-token event subject: it tailed nothing for ever; events.* was a stack trace.
      [["tail", "events.users.UserRegistered"], "a filter is a context"],
      [["tail", "events.*"], "a filter is a context"],
      [["history", "users", "not a valid id"], "an aggregate id matches"],
      [["history", "shop", "u1"], 'unknown context "shop"'],
      [["tail", "events.shop.>"], 'unknown context "shop"'],
      [["retry-dead-letter", "first"], "a dead letter's id is a positive integer"],
      [["dead-letters", "--limit", "0"], "--limit and --after are whole numbers"],
      [["status", "--wait", "soon"], '--wait must be a number ≥ 0 in plain decimal, not "soon"'],
    ];
    const runs = await Promise.all(cases.map(([args]) => runCli(down, ...args)));
    runs.forEach((r, i) => {
      expect(r.code, r.out).toBe(2);
      expect(r.stderr).toContain(cases[i]![1]);
      expect(r.stderr).not.toContain("no NATS server answers");
    });
  });
});

describe("nerve: send, history, tail", () => {
  it("sends a command as JSON or MessagePack and prints the reply; an idempotent repeat gets the same reply", async () => {
    const body = JSON.stringify({ email: "sent1@example.com", name: "Sent" });
    const first = await nerve(asStart(), "send", "users", "RegisterUser", "sent1", body, "--idempotency-key", "reg-sent1");
    expect(first.code, first.out).toBe(0);
    const reply = JSON.parse(first.stdout);
    expect(reply).toMatchObject({ ok: true, aggregate_id: "sent1", aggregate_version: 1, events: [{ event_type: "UserRegistered" }] });
    const [again, packed] = await Promise.all([
      nerve(asStart(), "send", "users", "RegisterUser", "sent1", body, "--idempotency-key", "reg-sent1", "--msgpack"),
      nerve(asStart(), "send", "users", "UpdateUserProfile", "sent1", '{"profile_data":{"display_name":"S"}}', "--msgpack"),
    ]);
    expect(JSON.parse(again.stdout)).toEqual(reply);
    expect(packed.code, packed.out).toBe(0);
    expect(JSON.parse(packed.stdout)).toMatchObject({ ok: true, aggregate_version: 2, events: [{ event_type: "UserProfileUpdated" }] });
  });

  it("prints an error reply's code and message and exits 1", async () => {
    await command(t.client, "users", "RegisterUser", "taken1", { email: "taken1@example.com", name: "T" });
    const [exists, missing, badBody] = await Promise.all([
      runCli(asStart(), "send", "users", "RegisterUser", "taken1", '{"email":"other@example.com","name":"O"}'),
      nerve(asStart(), "send", "users", "ChangeUserEmail", "nobody1", '{"new_email":"n@example.com"}'),
      nerve(asStart(), "send", "users", "RegisterUser", "bad1", "{not json"),
    ]);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toMatch(/^conflict: /);
    expect(exists.stdout).toBe("");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^not_found: /);
    expect(badBody.code).toBe(2);
    expect(badBody.stderr).toContain("the body is not JSON");
  });

  it("tails live events (a context; a subject filter as JSON) beside Nerve's consumers, and ends on Ctrl-C", async () => {
    const text = spawnCli(asStart(), "tail", "users");
    const json = startInProcess(asStart(), "tail", "events.*.UserRegistered.*", "--json");
    await Promise.all([text.waitFor(/tailing events\.users\.>/, "stderr"), json.waitFor(/tailing events\.users\.UserRegistered\.\*, events\.courses\.UserRegistered\.\*/, "stderr")]);
    await command(t.client, "users", "RegisterUser", "tail1", { email: "tail1@example.com", name: "Tailed" });
    await Promise.all([text.waitFor(/UserRegistered/), json.waitFor(/tail1/)]);
    expect(text.stdout()).toMatch(/^\d{4}-\d\d-\d\dT\S+Z {2}events\.users\.UserRegistered\.tail1 {2}UserRegistered {2}User tail1 {2}v1 {2}\{"user_id":"tail1","email":"tail1@example\.com","name":"Tailed"\}$/m);
    expect(JSON.parse(json.stdout().trim().split("\n")[0]!)).toMatchObject({
      subject: "events.users.UserRegistered.tail1",
      stream: "EVENTS_USERS",
      event: { event_type: "UserRegistered", aggregate_id: "tail1", payload: { email: "tail1@example.com" } },
    });
    const [textEnd, jsonEnd] = await Promise.all([text.interrupt(), json.interrupt()]);
    expect([textEnd.code, jsonEnd.code]).toEqual([0, 0]);
    // Nerve's own durable still got the event: the tail read beside it, not from it.
    await vi.waitFor(async () => expect((await query(t.client, "notifications", "ListNotifications", { user_id: "tail1" })).body.result.items).toHaveLength(1), { timeout: 10_000 });
  });

  it("prints an aggregate's history in order, or as JSON", async () => {
    await command(t.client, "users", "RegisterUser", "hist1", { email: "hist1@example.com", name: "H" });
    await command(t.client, "users", "ChangeUserEmail", "hist1", { new_email: "hist1b@example.com" });
    const [text, json, none] = await Promise.all([
      nerve(asStart(), "history", "users", "hist1"),
      nerve(asStart(), "history", "users", "hist1", "--json"),
      nerve(asStart(), "history", "orders", "no-such-order"),
    ]);
    expect(text.code, text.out).toBe(0);
    const lines = text.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/UserRegistered {2}User hist1 {2}v1 {2}\{"user_id":"hist1"/);
    expect(lines[1]).toMatch(/UserEmailChanged {2}User hist1 {2}v2 {2}\{"user_id":"hist1","old_email":"hist1@example.com","new_email":"hist1b@example.com"\}/);
    expect(JSON.parse(json.stdout).map((e: { aggregate_version: number }) => e.aggregate_version)).toEqual([1, 2]);
    expect(none.code).toBe(0);
    expect(none.stdout).toBe("");
    expect(none.stderr).toContain("no events of Order no-such-order");
  });
});

describe("nerve status", () => {
  it("is healthy on a running service (exit 0), unhealthy with a dead letter (exit 1), healthy again once it is retried", async () => {
    const healthy = await runCli(asStart(), "status");
    expect(healthy.code, healthy.out).toBe(0);
    const id = t.nerve.ownership.instanceId;
    expect(healthy.stdout).toContain(": HEALTHY");
    expect(healthy.stdout).toMatch(new RegExp(`${id}\\s+commands,consumers,gateway\\s+64 \\(0-63\\)\\s+(\\d+) of \\1\\s`));
    expect(healthy.stdout).toMatch(/EVENTS_USERS\s+\d+\s+[\d.]+ [KM]?B\s+1/);
    expect(healthy.stdout).toMatch(new RegExp(`notifications\\s+2\\s+0\\s+0\\s+0\\s+${id}`));
    expect(healthy.stdout).toMatch(/Outbox {2}0 unpublished/);
    expect(healthy.stdout).not.toContain("Problems");

    await t.nerve.consumers.deadLetters.add(deadLetter("dead1"));
    const [sick, sickJson] = await Promise.all([runCli(asStart(), "status"), nerve(asStart(), "status", "--json")]);
    expect(sick.code).toBe(1);
    expect(sick.stdout).toContain(": UNHEALTHY");
    expect(sick.stdout).toContain("✗ consumer notifications has 1 dead letter");
    expect(sickJson.code).toBe(1);
    const report = JSON.parse(sickJson.stdout);
    expect(report).toMatchObject({ healthy: false, problems: ["consumer notifications has 1 dead letter"], partitions: { total: 64, unowned: [] } });
    expect(report.instances.map((i: { instance: string }) => i.instance)).toEqual([id]);
    expect(report.streams.map((s: { name: string }) => s.name)).toEqual(["EVENTS_ACCESS", "EVENTS_COURSES", "EVENTS_ORDERS", "EVENTS_POLICIES", "EVENTS_USERS"]);

    const [letter] = await t.nerve.consumers.deadLetters.list("notifications");
    const retried = await nerve(asStart(), "retry-dead-letter", String(letter!.id));
    expect(retried.code, retried.out).toBe(0);
    expect((await nerve(asStart(), "status")).code).toBe(0);
  });
});
