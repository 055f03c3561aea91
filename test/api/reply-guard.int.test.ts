/**
 * Nerve answers only to reply subjects it may publish to: a request whose reply subject is the
 * JetStream API (or any `$…` subject) or one of Nerve's own subjects is dropped unanswered. Else a
 * caller allowed only `query.>` and `$SRV.>` had Nerve "answer" into `$JS.API.STREAM.PURGE.EVENTS_…`
 * — an empty purge request to JetStream: every event of the stream gone — or into `events.…`. Real
 * nats-server (no permissions: the guard alone is under test; nats-conf.int has the permissions).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/nats-core";
import { encodeJson } from "../../contracts/index.js";
import { acceptableReply } from "../../src/nats/index.js";
import { command, startTestNerve, until, type TestNerve } from "../support/index.js";

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
  expect((await command(t.client, "users", "RegisterUser", "rg-1", { email: "rg-1@example.com", name: "R" })).body.ok).toBe(true);
});
afterAll(async () => {
  await t?.close();
});

describe("reply subjects Nerve answers to", () => {
  it.each([
    ["$JS.API.STREAM.PURGE.EVENTS_USERS", false],
    ["$JS.API.STREAM.DELETE.EVENTS_USERS", false],
    ["$SYS.REQ.SERVER.PING", false],
    ["$SRV.PING", false],
    ["events.users.UserRegistered.forged", false],
    ["cmd.users.RegisterUser.x", false],
    ["pcmd.1.users.RegisterUser.x", false],
    ["query.users.GetUser", false],
    ["nerve.admin.replay", false],
    ["_INBOX.abc.1", true],
    ["_INBOX_nerve.abc.1", true],
    ["my-app.replies.7", true],
  ])("%s: %s", (reply, ok) => {
    expect(acceptableReply(reply)).toBe(ok);
  });

  it("drops a query, a command and a $SRV.PING whose reply is the JetStream API's purge: the stream keeps every event", async () => {
    const jsm = await jetstreamManager(t.client);
    await until("the registration is in its stream", async () => (await jsm.streams.info("EVENTS_USERS")).state.messages >= 1);
    const before = (await jsm.streams.info("EVENTS_USERS")).state.messages;
    const refusedBefore = t.nerve.api!.stats.refusedReplies;
    const purge = "$JS.API.STREAM.PURGE.EVENTS_USERS";
    // JSON, so that the answer is JSON: JetStream reads it as an (empty) purge request. On the old code
    // this query alone emptied EVENTS_USERS (checked by hand: 1 message before, 0 after).
    const json = headers();
    json.set("Content-Type", "application/json");
    t.client.publish("query.users.GetUser", encodeJson({ user_id: "rg-1" }), { reply: purge, headers: json });
    t.client.publish("cmd.users.UpdateUserProfile.rg-1", encodeJson({ profile_data: { display_name: "x" } }), { reply: purge, headers: json });
    t.client.publish("$SRV.PING", encodeJson({}), { reply: purge });
    t.client.publish("$SRV.PING.nerve", encodeJson({}), { reply: "events.users.UserRegistered.forged" });
    await until("the four were dropped", () => t.nerve.api!.stats.refusedReplies >= refusedBefore + 4);
    await t.client.flush();
    expect((await jsm.streams.info("EVENTS_USERS")).state.messages).toBe(before);
    // And the service still answers everyone else.
    expect((await command(t.client, "users", "UpdateUserProfile", "rg-1", { profile_data: { display_name: "Fine" } })).body.ok).toBe(true);
  });
});
