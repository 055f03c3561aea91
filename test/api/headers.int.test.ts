/**
 * Request headers (issue #10; found by api.props.int.test.ts): a header block nats.js cannot parse,
 * and a NUL in a contract header other than the three id headers, are the client's mistake —
 * `invalid_request`, nothing stored, nothing logged as an error; and an id header's 128 characters
 * are counted as the schemas count every other length, in code points.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReply, decodeJson, decodeMsgPack, encodeMsgPack } from "../../contracts/index.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { captureLog, command, query, startTestNerve, until, type CapturedLog, type TestNerve } from "../support/index.js";
import { RawNats, headerBlock } from "./raw-nats.js";
import { remoteCommands } from "../../src/api/remote-commands.js";

let t: TestNerve;
let log: CapturedLog;
let raw: RawNats;
beforeAll(async () => {
  log = captureLog("warn");
  t = await startTestNerve({}, { logger: log.logger });
  raw = await RawNats.connect(t.nats.port);
});
afterAll(async () => {
  raw?.close();
  await t?.close();
});

const body = (id: string) => encodeMsgPack({ email: `${id}@example.com`, name: "H" });

async function refused(subject: string, header: Uint8Array, data: Uint8Array, replyType: string) {
  const r = await raw.request(subject, header, data);
  if (r === "timeout") throw new Error("no reply");
  expect(r.headers["Content-Type"]).toBe(replyType);
  const decoded = replyType === "application/json" ? decodeJson(r.data) : decodeMsgPack(r.data);
  expect(decoded.ok).toBe(true);
  const reply = ErrorReply.parse(decoded.ok ? decoded.value : undefined);
  expect(reply.error.code).toBe("invalid_request");
  expect(r.headers["Nats-Service-Error-Code"]).toBe("400");
  return reply;
}

describe("request headers a client gets wrong", () => {
  it.each([
    ["a key with a space", "bad key: x"],
    ["a non-ASCII key", "Ünïcode: x"],
    ["a control character in a key", "Idempotency\u0001Key: x"],
  ])("answers a header block with %s invalid_request, in JSON, for commands and queries alike", async (_what, line) => {
    const id = `h-${Math.random().toString(36).slice(2, 10)}`;
    const reply = await refused(`cmd.users.RegisterUser.${id}`, headerBlock(["Content-Type: application/msgpack", line]), body(id), "application/json");
    expect(reply.error.message).toMatch(/malformed message headers/);
    await refused("query.users.GetUser", headerBlock([line]), encodeMsgPack({ user_id: id }), "application/json");
    expect((await query(t.client, "users", "GetUser", { user_id: id })).body.error.code).toBe("not_found");
  });

  it.each([
    ["Content-Type", "application/msgpack; charset=\u0000", "application/json"],
    ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\u0000", "application/msgpack"],
    ["tracestate", "vendor=a\u0000b", "application/msgpack"],
  ])("refuses a NUL in %s (header values are contract text) and stores nothing", async (name, value, replyType) => {
    const id = `n-${Math.random().toString(36).slice(2, 10)}`;
    const lines = name === "Content-Type" ? [`Content-Type: ${value}`] : ["Content-Type: application/msgpack", `${name}: ${value}`];
    const reply = await refused(`cmd.users.RegisterUser.${id}`, headerBlock(lines), body(id), replyType);
    expect(reply.error.message).toContain(name);
    expect(await t.nerve.bus.repo.history("User", id)).toEqual([]);
  });

  it("measures the id headers in characters as the schemas do (code points): 128 emoji fit, 129 do not", async () => {
    const id = `e-${Math.random().toString(36).slice(2, 10)}`;
    const fits = "😀".repeat(128);
    const ok = await command(t.client, "users", "RegisterUser", id, { email: `${id}@example.com`, name: "E" }, { headers: { "Idempotency-Key": fits, "Correlation-Id": fits, "Causation-Id": fits } });
    expect(ok.body).toMatchObject({ ok: true });
    const [event] = await t.nerve.bus.repo.history("User", id);
    expect([event!.correlation_id, event!.causation_id]).toEqual([fits, fits]);
    for (const name of ["Idempotency-Key", "Correlation-Id", "Causation-Id"]) {
      const r = await command(t.client, "users", "UpdateUserProfile", id, { profile_data: { bio: name } }, { headers: { [name]: "😀".repeat(129) } });
      expect(r.body.error).toMatchObject({ code: "invalid_request", message: `${name} is longer than 128 characters` });
    }
  });

  it("reads the contract's request headers by name whatever their case: a retry with idempotency-key takes effect once", async () => {
    const id = `c-${Math.random().toString(36).slice(2, 10)}`;
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    // RegisterUser sent twice: a second one without its key would be refused (the user exists).
    const send = async () => {
      const r = await raw.request(
        `cmd.users.RegisterUser.${id}`,
        headerBlock(["content-type: application/msgpack", "idempotency-key: once-only", "correlation-id: corr-lower", `Traceparent: ${traceparent}`]),
        body(id),
      );
      if (r === "timeout") throw new Error("no reply");
      const d = decodeMsgPack(r.data);
      return d.ok ? (d.value as { ok: boolean; events?: { event_id: string }[] }) : undefined;
    };
    const first = await send();
    const again = await send();
    expect(first?.ok).toBe(true);
    expect(again).toEqual(first); // answered from the idempotency store
    const history = await t.nerve.bus.repo.history("User", id);
    expect(history.map((e) => [e.event_type, e.correlation_id])).toEqual([["UserRegistered", "corr-lower"]]);
    // `Traceparent` (MIME-canonical case) joined the command's trace: its event carries it.
    const jsm = await jetstreamManager(t.client);
    const subject = `events.users.UserRegistered.${id}`;
    await until("the event is in its stream", async () => (await jsm.streams.getMessage("EVENTS_USERS", { last_by_subj: subject }).catch(() => null)) !== null);
    expect((await jsm.streams.getMessage("EVENTS_USERS", { last_by_subj: subject }))!.header.get("traceparent")).toBe(traceparent);
  });

  it("refuses a header block that is not valid UTF-8: two different invalid keys were read as one (U+FFFD)", async () => {
    const id = `u-${Math.random().toString(36).slice(2, 10)}`;
    const block = (last: number[]) =>
      Buffer.concat([Buffer.from("NATS/1.0\r\nContent-Type: application/msgpack\r\nIdempotency-Key: k", "latin1"), Buffer.from(last), Buffer.from("\r\n\r\n", "latin1")]);
    for (const bytes of [[0xff], [0xfe], [0xed, 0xa0, 0x80]]) {
      const reply = await refused(`cmd.users.RegisterUser.${id}`, block(bytes), body(id), "application/json");
      expect(reply.error.message).toBe("message headers must be valid UTF-8");
    }
    expect((await query(t.client, "users", "GetUser", { user_id: id })).body.error.code).toBe("not_found");
  });

  it("reads a non-ASCII header value exactly, trimmed of spaces and tabs only: keys k\u00A0 and k are two keys", async () => {
    const id = `u-${Math.random().toString(36).slice(2, 10)}`;
    const send = async (key: string, correlation: string) => {
      const r = await raw.request(`cmd.users.RegisterUser.${id}`, headerBlock(["Content-Type: application/msgpack", `Idempotency-Key: ${key}`, `Correlation-Id: ${correlation}`]), body(id));
      if (r === "timeout") throw new Error("no reply");
      const d = decodeMsgPack(r.data);
      return d.ok ? (d.value as { ok: boolean; error?: { code: string } }) : undefined;
    };
    expect((await send("k\u00A0", " \t\u3000corr\u00A0 \t"))?.ok).toBe(true);
    // Another key: the command runs again, and the user exists (nats.js alone read both as "k" and answered from the first).
    const second = await send("k", "corr");
    expect(second?.error?.code, JSON.stringify(second)).toBe("conflict");
    const history = await t.nerve.bus.repo.history("User", id);
    expect(history.map((e) => e.correlation_id)).toEqual(["\u3000corr\u00A0"]);
  });

  it("refuses a header block over 16 KiB before reading it, and a long run of spaces in a header costs nothing", async () => {
    // Was: a Content-Type of 120,000 spaces and a letter held the event loop 26 s (a quadratic trim), every
    // other request of the instance waiting behind it.
    const id = `w-${Math.random().toString(36).slice(2, 10)}`;
    const big = await refused(`cmd.users.RegisterUser.${id}`, headerBlock([`Content-Type: application/json${" ".repeat(120_000)}x`]), body(id), "application/json");
    expect(big.error.message).toBe("message headers are larger than 16384 bytes");
    await refused("query.users.GetUser", headerBlock([`X-Padding: ${"p".repeat(17_000)}`]), encodeMsgPack({ user_id: id }), "application/json");
    // Within the bound, a value padded with spaces on both ends is read as its text.
    const spaced = await raw.request(`cmd.users.RegisterUser.${id}`, headerBlock([`Content-Type: ${" ".repeat(7000)}application/msgpack${"\t".repeat(7000)}`]), body(id));
    if (spaced === "timeout") throw new Error("no reply");
    const d = decodeMsgPack(spaced.data);
    expect(d.ok && (d.value as { ok: boolean }).ok).toBe(true);
  });

  it("sends a process manager's command to another instance with its id headers exactly as they are", async () => {
    // Was: through nats.js's headers, which trim any Unicode white space: a correlation id ending in a
    // no-break space was another id once the command went to the owner on another instance.
    const send = remoteCommands(t.client);
    const id = `r-${Math.random().toString(36).slice(2, 10)}`;
    const exact = { idempotencyKey: "k3\u00A0", correlationId: "\u3000checkout-42\u00A0", causationId: "cause\v" };
    const ok = await send({ context: "users", type: "RegisterUser", aggregateId: id, body: { email: `${id}@example.com`, name: "R" }, ...exact });
    expect(ok.ok).toBe(true);
    const history = await t.nerve.bus.repo.history("User", id);
    expect(history.map((e) => [e.correlation_id, e.causation_id])).toEqual([[exact.correlationId, exact.causationId]]);
    // The key as sent: "k3" is another key (the command runs again and the user exists).
    await expect(send({ context: "users", type: "RegisterUser", aggregateId: id, body: { email: `${id}@example.com`, name: "R" }, idempotencyKey: "k3" })).rejects.toMatchObject({ code: "conflict" });
    expect(await send({ context: "users", type: "RegisterUser", aggregateId: id, body: { email: `${id}@example.com`, name: "R" }, ...exact })).toEqual(ok);
  });

  it("reads an id header with a control character exactly, whatever else the block holds: k\\v and k are two keys", async () => {
    // nats.js trimmed \v and \f off a value's ends when the whole block was ASCII, where a non-ASCII header
    // elsewhere kept them: `k\v` was the key `k` or another, as the rest of the block decided.
    for (const extra of [[], ["Causation-Id: \u00E9"]]) {
      const id = `c-${Math.random().toString(36).slice(2, 10)}`;
      const send = async (key: string) => {
        const r = await raw.request(`cmd.users.RegisterUser.${id}`, headerBlock(["Content-Type: application/msgpack", `Idempotency-Key: ${key}`, `Correlation-Id: ${key}`, ...extra]), body(id));
        if (r === "timeout") throw new Error("no reply");
        const d = decodeMsgPack(r.data);
        return d.ok ? (d.value as { ok: boolean; error?: { code: string } }) : undefined;
      };
      expect((await send("k2\v"))?.ok, JSON.stringify(extra)).toBe(true);
      // Another key: the command runs again and the user exists (read as one key, the first success came back).
      const second = await send("k2");
      expect(second?.error?.code, JSON.stringify(second)).toBe("conflict");
      const history = await t.nerve.bus.repo.history("User", id);
      expect(history.map((e) => e.correlation_id)).toEqual(["k2\v"]);
    }
  });

  it("logged no error for any of them", () => {
    expect(log.errors()).toEqual([]);
    expect(t.nerve.api!.stats.failed.internal ?? 0).toBe(0);
  });
});
