import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { EventSchemas, decodeMsgPack, encodeMsgPack } from "../../contracts/index.js";
import { command, query, request, startTestNerve, type TestNerve } from "../support/index.js";

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
});
afterAll(async () => {
  await t?.close();
});

/** Reads every message of a stream whose subject ends with the aggregate id, in stream order. */
async function streamEvents(stream: string, filter: string) {
  const jsm = await jetstreamManager(t.client);
  const out: { subject: string; headers: Record<string, string>; envelope: any }[] = [];
  const info = await jsm.streams.info(stream);
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && seq > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (!m || !m.subject.endsWith(filter)) continue;
    const headers: Record<string, string> = {};
    for (const k of m.header?.keys() ?? []) headers[k] = m.header!.get(k);
    const d = decodeMsgPack(m.data);
    out.push({ subject: m.subject, headers, envelope: d.ok ? d.value : undefined });
  }
  return out;
}

async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("the durable command path (User)", () => {
  it("registers a user, replies after commit, and publishes the event with the contract's subject, headers and envelope", async () => {
    const r = await command(t.client, "users", "RegisterUser", "u1", { email: "Ada@Example.com", name: "Ada" });
    expect(r.body).toMatchObject({ ok: true, aggregate_id: "u1", aggregate_version: 1 });
    expect(r.body.events).toHaveLength(1);
    expect(r.body.events[0].event_type).toBe("UserRegistered");
    expect(r.headers["Content-Type"]).toBe("application/msgpack");

    const events = await waitFor(() => streamEvents("EVENTS_USERS", ".u1"), (e) => e.length === 1);
    expect(events).toHaveLength(1);
    const [e] = events;
    expect(e!.subject).toBe("events.users.UserRegistered.u1");
    expect(e!.headers["Nats-Msg-Id"]).toBe(r.body.events[0].event_id);
    expect(e!.headers["Content-Type"]).toBe("application/msgpack");
    expect(e!.headers["Event-Type"]).toBe("UserRegistered");
    expect(e!.headers["Event-Version"]).toBe("1");
    expect(EventSchemas.UserRegistered.parse(e!.envelope).payload).toEqual({ user_id: "u1", email: "ada@example.com", name: "Ada" });
  });

  it("answers GetUser from the actor's state, seeing the command just answered", async () => {
    await command(t.client, "users", "UpdateUserProfile", "u1", { profile_data: { display_name: "Countess", locale: "en-GB" } });
    const r = await query(t.client, "users", "GetUser", { user_id: "u1" });
    expect(r.body.ok).toBe(true);
    expect(r.body.result).toMatchObject({ user_id: "u1", email: "ada@example.com", version: 2 });
    expect(r.body.result.profile_data).toMatchObject({ display_name: "Countess", locale: "en-GB", bio: null });
  });

  it("makes e-mail unique across users, case-insensitively, with a 409 conflict", async () => {
    const r = await command(t.client, "users", "RegisterUser", "u2", { email: "ADA@example.COM", name: "Other" });
    expect(r.body).toMatchObject({ ok: false, error: { code: "conflict" } });
    expect(r.headers["Nats-Service-Error-Code"]).toBe("409");
    expect(r.headers["Nats-Service-Error"]).toBeTruthy();
    const g = await query(t.client, "users", "GetUser", { user_id: "u2" });
    expect(g.body.error.code).toBe("not_found");
  });

  it("settles a race for one address in the same batch: exactly one wins", async () => {
    const rs = await Promise.all(["r1", "r2", "r3", "r4"].map((id) => command(t.client, "users", "RegisterUser", id, { email: "race@example.com", name: "R" })));
    expect(rs.filter((r) => r.body.ok)).toHaveLength(1);
    expect(rs.filter((r) => r.body.error?.code === "conflict")).toHaveLength(3);
  });

  it("speaks JSON when asked, and answers an unsupported Content-Type in JSON", async () => {
    const r = await command(t.client, "users", "RegisterUser", "uj", { email: "j@example.com", name: "J" }, { json: true });
    expect(r.headers["Content-Type"]).toBe("application/json");
    expect(r.body.ok).toBe(true);
    const bad = await command(t.client, "users", "RegisterUser", "uk", { email: "k@example.com", name: "K" }, { contentType: "text/plain" });
    expect(bad.headers["Content-Type"]).toBe("application/json");
    expect(bad.body.error.code).toBe("invalid_request");
  });

  it.each([
    ["garbage bytes", "cmd.users.RegisterUser.g1", { raw: new Uint8Array([0xc1, 0xff]) }],
    ["a schema violation", "cmd.users.RegisterUser.g2", { body: { email: "not-an-email", name: "x" } }],
    ["an unknown field", "cmd.users.RegisterUser.g3", { body: { email: "g3@example.com", name: "x", admin: true } }],
    ["an id longer than 64", `cmd.users.RegisterUser.${"a".repeat(65)}`, { body: { email: "g4@example.com", name: "x" } }],
    ["an id of two tokens", "cmd.users.RegisterUser.a.b", { body: { email: "g5@example.com", name: "x" } }],
    ["an unknown command", "cmd.users.DeleteEverything.g6", { body: {} }],
    ["an oversized body", "cmd.users.RegisterUser.g7", { body: { email: "g7@example.com", name: "x".repeat(70_000) } }],
    ["a body that is not a map", "cmd.users.RegisterUser.g8", { body: [1, 2, 3] }],
    // Answered by the catch-all endpoint (cmd.>), no longer the server's "no responders".
    ["an unknown context", "cmd.nosuch.RegisterUser.g9", { body: { email: "g9@example.com", name: "x" } }],
    ["a subject of two tokens", "cmd.users", { body: {} }],
    ["a subject of three tokens", "cmd.users.RegisterUser", { body: { email: "g10@example.com", name: "x" } }],
  ])("refuses %s with invalid_request and stores nothing", async (_what, subject, o: any) => {
    const r = await request(t.client, subject, o.body, { raw: o.raw });
    expect(r.body.ok).toBe(false);
    expect(r.body.error.code).toBe("invalid_request");
    expect(r.headers["Nats-Service-Error-Code"]).toBe("400");
    const id = subject.split(".").slice(3).join(".");
    if (/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
      expect(await t.nerve.bus.repo.history("User", id)).toEqual([]);
    }
  });

  it("answers a query for an unknown context or query with invalid_request, not the server's no responders", async () => {
    for (const subject of ["query.nosuch.GetUser", "query.users.NoSuchQuery", "query.users", "query.users.GetUser.extra"]) {
      const r = await request(t.client, subject, { user_id: "u1" });
      expect(r.body, subject).toMatchObject({ ok: false, error: { code: "invalid_request" } });
      expect(r.headers["Nats-Service-Error-Code"]).toBe("400");
    }
  });

  it("answers each command once though cmd.users.> and the catch-all cmd.> both match it (one queue group)", async () => {
    await command(t.client, "users", "RegisterUser", "once", { email: "once@example.com", name: "Once" });
    const inbox = t.client.subscribe("_INBOX.once-replies.*");
    const replies: string[] = [];
    void (async () => {
      for await (const m of inbox) replies.push(m.subject);
    })();
    const N = 60;
    for (let i = 0; i < N; i++) t.client.publish("cmd.users.UpdateUserProfile.once", encodeMsgPack({ profile_data: { bio: `b${i}` } }), { reply: `_INBOX.once-replies.${i}` });
    await waitFor(async () => replies, (r) => r.length >= N);
    await new Promise((r) => setTimeout(r, 300)); // a second reply to any of them would be here by now
    inbox.unsubscribe();
    expect(replies.length).toBe(N);
    expect(new Set(replies).size).toBe(N);
    expect((await t.nerve.bus.repo.history("User", "once")).length).toBe(N + 1);
  });

  it("answers a no-op update with no events and the unchanged version", async () => {
    const r = await command(t.client, "users", "UpdateUserProfile", "u1", { profile_data: { display_name: "Countess" } });
    expect(r.body).toMatchObject({ ok: true, aggregate_version: 2, events: [] });
  });

  it("honours Idempotency-Key: a repeat returns the first reply and changes nothing; another body is conflict", async () => {
    const h = { headers: { "Idempotency-Key": "k-1" } };
    const a = await command(t.client, "users", "UpdateUserProfile", "u1", { profile_data: { bio: "first" } }, h);
    const b = await command(t.client, "users", "UpdateUserProfile", "u1", { profile_data: { bio: "first" } }, h);
    expect(b.body).toEqual(a.body);
    const c = await command(t.client, "users", "UpdateUserProfile", "u1", { profile_data: { bio: "second" } }, h);
    expect(c.body.error.code).toBe("conflict");
    const history = await t.nerve.bus.repo.history("User", "u1");
    expect(history.filter((e) => e.event_type === "UserProfileUpdated")).toHaveLength(2);
  });

  it("does not remember a failed command's key: a retry runs again", async () => {
    const h = { headers: { "Idempotency-Key": "k-fail" } };
    const a = await command(t.client, "users", "UpdateUserProfile", "nobody", { profile_data: { bio: "x" } }, h);
    expect(a.body.error.code).toBe("not_found");
    await command(t.client, "users", "RegisterUser", "nobody", { email: "nobody@example.com", name: "N" });
    const b = await command(t.client, "users", "UpdateUserProfile", "nobody", { profile_data: { bio: "x" } }, h);
    expect(b.body.ok).toBe(true);
  });

  it("propagates Correlation-Id and Causation-Id into the envelope; defaults both to the command id", async () => {
    await command(t.client, "users", "RegisterUser", "c1", { email: "c1@example.com", name: "C" }, { headers: { "Correlation-Id": "corr-9", "Causation-Id": "evt-8" } });
    await command(t.client, "users", "UpdateUserProfile", "c1", { profile_data: { bio: "b" } });
    const h = await query(t.client, "audit", "History", { aggregate_type: "User", aggregate_id: "c1" });
    const [first, second] = h.body.result.events;
    expect(first).toMatchObject({ correlation_id: "corr-9", causation_id: "evt-8", aggregate_version: 1 });
    expect(second.correlation_id).toBe(second.causation_id);
    expect(second.correlation_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("keeps per-aggregate order in JetStream under concurrent commands", async () => {
    await command(t.client, "users", "RegisterUser", "o1", { email: "o1@example.com", name: "O" });
    await Promise.all(Array.from({ length: 40 }, (_, i) => command(t.client, "users", "UpdateUserProfile", "o1", { profile_data: { bio: `b${i}` } })));
    const events = await waitFor(() => streamEvents("EVENTS_USERS", ".o1"), (e) => e.length === 41);
    expect(events.map((e) => e.envelope.aggregate_version)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
  });

  it("writes a lone command's reply before its event: the relay publishes after the turn that answers", async () => {
    await command(t.client, "users", "RegisterUser", "lone1", { email: "lone1@example.com", name: "L" });
    // What reaches this connection, in the order Nerve's one connection wrote it (callbacks, not promises:
    // a request's promise would resolve a microtask after the message behind it was dispatched).
    const seen: string[] = [];
    const events = t.client.subscribe("events.users.UserProfileUpdated.lone1", { callback: () => void seen.push("event") });
    const inbox = t.client.subscribe(`_INBOX.lone1.${Date.now()}`, { callback: () => void seen.push("reply") });
    try {
      for (let i = 0; i < 5; i++) {
        const before = seen.length;
        t.client.publish(`cmd.users.UpdateUserProfile.lone1`, encodeMsgPack({ profile_data: { bio: `lone ${i}` } }), { reply: inbox.getSubject() });
        await waitFor(async () => seen.length, (n) => n === before + 2);
        // Each command alone: its reply, then its event (woken at once, the relay used to publish first).
        expect(seen.slice(before)).toEqual(["reply", "event"]);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      events.unsubscribe();
      inbox.unsubscribe();
    }
  });

  it("is discoverable as the NATS service `nerve`", async () => {
    const m = await t.client.request("$SRV.INFO.nerve", new Uint8Array(), { timeout: 2000 });
    const info = JSON.parse(new TextDecoder().decode(m.data));
    expect(info.name).toBe("nerve");
    expect(info.endpoints.map((e: { subject: string }) => e.subject)).toContain("cmd.users.>");
    expect(info.endpoints.map((e: { subject: string }) => e.subject)).toEqual(expect.arrayContaining(["cmd.>", "query.>"]));
  });

  it("creates the five streams with file storage and a duplicate window of at least two minutes", async () => {
    const jsm = await jetstreamManager(t.client);
    const names: string[] = [];
    for await (const s of jsm.streams.list()) names.push(s.config.name);
    expect(names.sort()).toEqual(["EVENTS_ACCESS", "EVENTS_COURSES", "EVENTS_ORDERS", "EVENTS_POLICIES", "EVENTS_USERS"]);
    for (const name of names) {
      const s = await jsm.streams.info(name);
      expect(s.config.storage).toBe("file");
      expect(s.config.duplicate_window).toBeGreaterThanOrEqual(120e9);
    }
  });

  it("keeps idempotency keys and state across a restart", async () => {
    const h = { headers: { "Idempotency-Key": "k-restart" } };
    const a = await command(t.client, "users", "UpdateUserProfile", "u1", { profile_data: { bio: "restart" } }, h);
    await t.stopNerve();
    await t.restartNerve();
    const b = await command(t.client, "users", "UpdateUserProfile", "u1", { profile_data: { bio: "restart" } }, h);
    expect(b.body).toEqual(a.body);
    const g = await query(t.client, "users", "GetUser", { user_id: "u1" });
    expect(g.body.result.profile_data.bio).toBe("restart");
  });
});
