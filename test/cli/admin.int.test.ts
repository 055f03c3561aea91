import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command, query, request, startNatsServer, startTestNerve, type TestNerve } from "../support/index.js";
import { AdminSubjects } from "../../src/api/admin-subjects.js";
import { connect } from "@nats-io/transport-node";
import { nerve, runCli, startInProcess } from "./support.js";

let t: TestNerve;
// The replay runs as a child process (its exit code and output are real); the rest in this process, through the same runNerve.
const child = (...args: string[]) => runCli({ NATS_URL: t.nats.url }, ...args);
const cli = (...args: string[]) => nerve({ NATS_URL: t.nats.url }, ...args);

beforeAll(async () => {
  t = await startTestNerve();
  for (let i = 0; i < 30; i++) await command(t.client, "users", "RegisterUser", `cli${i}`, { email: `cli${i}@example.com`, name: `C${i}` });
  await vi.waitFor(async () => expect((await query(t.client, "notifications", "ListNotifications", { user_id: "cli29" })).body.result.items).toHaveLength(1), { timeout: 10_000 });
});
afterAll(async () => {
  await t?.close();
});

describe("npm run nerve", () => {
  it("replays a consumer with progress while the service runs, rebuilding the same read model", async () => {
    const before = (await query(t.client, "notifications", "ListNotifications", { user_id: "cli7" })).body.result.items;
    const { code, out } = await child("replay", "notifications");
    expect(code).toBe(0);
    expect(out).toMatch(new RegExp(`replayed (\\d+) of \\1 events into notifications on instance ${t.nerve.ownership.instanceId}`));
    const after = (await query(t.client, "notifications", "ListNotifications", { user_id: "cli7" })).body.result.items;
    expect(after).toEqual(before);
  });

  it("Ctrl-C during a replay stops the watching, not the replay: exit 130, and the replay finishes in the service", async () => {
    const run = startInProcess({ NATS_URL: t.nats.url }, "replay", "notifications");
    // At once: the replay of 30 users is over in a moment, and the CLI would report it done.
    const { code, stderr } = await run.interrupt();
    expect(code).toBe(130);
    expect(stderr).toMatch(/stopped watching; the replay of notifications goes on in the service/);
    const status = async () => (await request(t.client, AdminSubjects.ReplayStatus, { consumer: "notifications" }, { json: true })).body.result;
    await vi.waitFor(async () => expect(await status()).toMatchObject({ running: false }), { timeout: 15_000 });
    const done = await status();
    expect(done.done).toBe(done.total);
  });

  it("ends any other command at Ctrl-C with exit 130 (the first Ctrl-C did nothing but for tail)", async () => {
    const bare = await startNatsServer();
    const silent = await connect({ servers: bare.url, noAsyncTraces: true });
    try {
      // Something takes the request and never answers: lag waits for its answer.
      let asked = 0;
      silent.subscribe(AdminSubjects.Lag, { callback: () => void asked++ });
      await silent.flush();
      const run = startInProcess({ NATS_URL: bare.url }, "lag");
      await vi.waitFor(() => expect(asked, "lag's request arrived").toBe(1), { timeout: 10_000 });
      const { code, stderr } = await run.interrupt();
      // Ended by the Ctrl-C, not by the request's own timeout (that is an error, "no answer on …", exit 1).
      expect(code).toBe(130);
      expect(stderr).not.toMatch(/no answer/);
    } finally {
      await silent.close();
      await bare.stop();
    }
  });

  it("needs only the connection settings: NODE_ENV=production without NERVE_JWT_SECRET runs", async () => {
    const { code, out } = await cli("lag");
    expect(code).toBe(0);
    const production = await nerve({ NATS_URL: t.nats.url, NODE_ENV: "production", NATS_USER: "", NATS_PASSWORD: "" }, "lag");
    expect(production.out).not.toMatch(/NERVE_JWT_SECRET/);
    expect(production.code, production.out).toBe(0);
    expect(out).toContain("notifications");
  });

  it("shows the lag of every consumer", async () => {
    const { code, out } = await cli("lag");
    expect(code).toBe(0);
    expect(out).toContain("notifications");
    expect(out).toContain("EVENTS_USERS");
  });

  it("lists dead letters and refuses an unknown consumer with a clear message", async () => {
    const list = await cli("dead-letters");
    expect(list.code).toBe(0);
    expect(JSON.parse(list.out)).toEqual([]);
    const bad = await cli("replay", "nobody");
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("not_found: no consumer nobody");
  });

  it("retries a dead letter through its consumer: handled once, then gone; a letter without an event stays", async () => {
    const envelope = {
      event_id: "0190a0b0-0000-7000-8000-0000000000aa",
      event_type: "UserRegistered",
      event_version: 1,
      occurred_on: new Date().toISOString(),
      aggregate_type: "User",
      aggregate_id: "dl1",
      aggregate_version: 1,
      correlation_id: "c-dl1",
      causation_id: null,
      payload: { user_id: "dl1", email: "dl1@example.com", name: "D" },
    };
    const dead = t.nerve.consumers.deadLetters;
    await dead.add({ consumer: "notifications", stream: "EVENTS_USERS", stream_seq: 1, event_id: envelope.event_id, event_type: "UserRegistered", envelope: JSON.stringify(envelope), reason: "test", attempts: 5 });
    await dead.add({ consumer: "notifications", stream: "EVENTS_USERS", stream_seq: 2, event_id: null, event_type: null, envelope: null, reason: "garbage bytes", attempts: 1 });
    const [good, bad] = await dead.list("notifications");
    const retried = await cli("retry-dead-letter", String(good!.id));
    expect(retried.code).toBe(0);
    expect(retried.out).toContain("handled");
    const items = (await query(t.client, "notifications", "ListNotifications", { user_id: "dl1" })).body.result.items;
    expect(items.map((n: { kind: string }) => n.kind)).toEqual(["welcome"]);
    const refused = await cli("retry-dead-letter", String(bad!.id));
    expect(refused.code).toBe(1);
    expect(refused.out).toContain("holds no valid event");
    expect((await dead.list("notifications")).map((d) => d.id)).toEqual([bad!.id]);
  });

  it("says a retry the read model cannot take is stale, keeps the letter and names the replay (exit 1); it was answered handled and deleted", async () => {
    const updated = {
      event_id: "0190a0b0-0000-7000-8000-0000000000ab",
      event_type: "CourseUpdated",
      event_version: 1,
      occurred_on: new Date().toISOString(),
      aggregate_type: "Course",
      aggregate_id: "dl-old-row",
      aggregate_version: 2,
      correlation_id: "c-dl2",
      causation_id: null,
      payload: { course_id: "dl-old-row", title: "T", description: "d", price: null },
    };
    const dead = t.nerve.consumers.deadLetters;
    // The course's row is from before the groups' versions (they are null) and is past the update: whether
    // a later event replaced what the update sets, only a replay tells.
    await t.nerve.db.execute(
      "insert into catalog_courses (course_id, title, description, price_amount, price_currency, instructor_id, policy_id, status, version, updated_on) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ["dl-old-row", "Later", "", null, null, "i1", "p1", "active", 3, new Date().toISOString()],
      "run",
    );
    await dead.add({ consumer: "catalog", stream: "EVENTS_COURSES", stream_seq: 2, event_id: updated.event_id, event_type: "CourseUpdated", envelope: JSON.stringify(updated), reason: "test", attempts: 5 });
    const [letter] = await dead.list("catalog");
    const run = await cli("retry-dead-letter", String(letter!.id));
    expect(run.code).toBe(1);
    expect(run.out).toContain('"outcome":"stale"');
    expect(run.out).toContain(`dead letter ${letter!.id} stays`);
    expect(run.out).toContain("npm run nerve -- replay catalog");
    expect((await dead.list("catalog")).map((d) => d.id)).toEqual([letter!.id]);
    // The admin reply says the same to any client.
    const reply = (await request(t.client, AdminSubjects.RetryDeadLetter, { id: letter!.id }, { json: true })).body;
    expect(reply).toMatchObject({ ok: true, result: { outcome: "stale", message: expect.stringContaining("replay") } });
  });

  it("prints its usage without a command", async () => {
    const { code, out } = await cli();
    expect(code).toBe(2);
    expect(out).toContain("replay <consumer>");
  });
});

describe("npm run nerve -- dead-letters, many of them", () => {
  it("prints every letter a page at a time (2,000 of 1 KiB were past NATS's max_payload in one reply), the first --limit, after --after", async () => {
    const dead = t.nerve.consumers.deadLetters;
    const payload = { user_id: "dlx", email: "dlx@example.com", name: "x".repeat(900) };
    for (let i = 0; i < 2_000; i++) {
      const envelope = { event_id: `0190a0b0-0000-7000-8000-${String(i).padStart(12, "0")}`, event_type: "UserRegistered", event_version: 1, occurred_on: new Date().toISOString(), aggregate_type: "User", aggregate_id: `dlx${i}`, aggregate_version: 1, correlation_id: "c", causation_id: null, payload };
      await dead.add({ consumer: "audit", stream: "EVENTS_USERS", stream_seq: 100 + i, event_id: envelope.event_id, event_type: "UserRegistered", envelope: JSON.stringify(envelope), reason: "bulk", attempts: 5 });
    }
    const all = await cli("dead-letters", "audit");
    expect(all.code).toBe(0);
    const letters = JSON.parse(all.out) as { id: number; consumer: string; stream_seq: number; envelope: { aggregate_id: string } }[];
    expect(letters).toHaveLength(2_000);
    expect(letters.map((l) => l.stream_seq)).toEqual(Array.from({ length: 2_000 }, (_, i) => 100 + i));
    expect(letters.every((l) => l.consumer === "audit")).toBe(true);
    expect(letters[1_999]!.envelope.aggregate_id).toBe("dlx1999");

    const first = await cli("dead-letters", "audit", "--limit", "20");
    expect(JSON.parse(first.out).map((l: { id: number }) => l.id)).toEqual(letters.slice(0, 20).map((l) => l.id));
    const rest = await cli("dead-letters", "audit", "--after", String(letters[1_994]!.id));
    expect(JSON.parse(rest.out).map((l: { id: number }) => l.id)).toEqual(letters.slice(1_995).map((l) => l.id));

    // One page of the admin API: under its byte budget, and where the next begins.
    const page = (await request(t.client, AdminSubjects.DeadLetters, { consumer: "audit", limit: 1_000 }, { json: true })).body as { ok: true; result: { items: unknown[]; next: number } };
    expect(page.ok).toBe(true);
    expect(page.result.items.length).toBeGreaterThan(100);
    expect(page.result.items.length).toBeLessThan(1_000);
    expect(Buffer.byteLength(JSON.stringify(page.result.items))).toBeLessThanOrEqual(256 * 1024);
    expect(page.result.next).toBe(letters[page.result.items.length - 1]!.id);
  }, 120_000);

  it("refuses a bad page with a clear message: on the command line and at the admin API", async () => {
    for (const args of [["--limit", "0"], ["--limit", "x"], ["--after", "-1"], ["--after", "1.5"]]) {
      const bad = await cli("dead-letters", ...args);
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.out).toMatch(/--(limit|after)/);
    }
    for (const body of [{ limit: 0 }, { limit: 1_001 }, { after: "3" }, { after: -1 }, { limit: 2.5 }]) {
      const r = (await request(t.client, AdminSubjects.DeadLetters, body, { json: true })).body as { ok: false; error: { code: string; message: string } };
      expect(r, JSON.stringify(body)).toMatchObject({ ok: false, error: { code: "invalid_request", message: expect.stringMatching(/^(limit|after) must be a whole number from/) } });
    }
  });
});

describe("npm run nerve -- replay, when the instance running it leaves", () => {
  it("says the instance left and the consumer's next holder reads on (exit 1); was: 'no Nerve service answers …: start it with npm start first'", async () => {
    // A bare server where the service's replay is answered as an instance `gone` would, which then stops
    // answering its own subject: a SIGTERM while it replayed (ops audit).
    const bare = await startNatsServer();
    const nc = await connect({ servers: bare.url, noAsyncTraces: true });
    try {
      nc.subscribe(AdminSubjects.Replay, { callback: (_e, m) => void m.respond(JSON.stringify({ ok: true, result: { consumer: "notifications", done: 0, total: 12_000, running: true, instance: "gone" } })) });
      await nc.flush();
      const { code, out } = await nerve({ NATS_URL: bare.url }, "replay", "notifications");
      expect(code).toBe(1);
      expect(out).toMatch(/instance gone left during the replay of notifications: the consumer's next holder reads on from where it stopped/);
      expect(out).not.toMatch(/npm start/);
    } finally {
      await nc.close();
      await bare.stop();
    }
  });
});
