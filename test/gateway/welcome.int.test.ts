import { describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { deriveAccessId, encodeMsgPack, decodeMsgPack } from "../../contracts/index.js";
import { until, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
import { EventForge, TestClient, sleep, startTestGateway } from "./support.js";

// No Nerve here: the tests play the GetLearnerProgress responder themselves.
let nats: NatsServerHandle;
let nc: NatsConnection;
useNatsWithStreams((h) => ({ nats, nc } = h));

const view = (user: string, course: string, progress: number, version: number) => ({
  access_id: deriveAccessId(user, course),
  user_id: user,
  course_id: course,
  status: "active",
  progress,
  completed: false,
  expires_at: null,
  order_id: null,
  version,
});

/** Answers GetLearnerProgress with `items(user_id)` until stopped. */
function fakeLearnerProgress(items: (userId: string) => unknown[]) {
  const sub = nc.subscribe("query.access.GetLearnerProgress", {
    callback: (_err, msg) => {
      const body = decodeMsgPack(msg.data);
      const userId = body.ok ? (body.value as { user_id: string }).user_id : "";
      msg.respond(encodeMsgPack({ ok: true, result: { items: items(userId) } }));
    },
  });
  return { stop: () => sub.isClosed() || sub.unsubscribe() };
}

describe("welcome", () => {
  it("is the first frame: acks of frames sent on open come after it (and after reset + welcome)", async () => {
    const gw = await startTestGateway(nats.url);
    // A GetLearnerProgress that takes its time, as a loaded service does: the welcome waits for it.
    const slow = nc.subscribe("query.access.GetLearnerProgress", {
      callback: (_err, msg) => void setTimeout(() => msg.respond(encodeMsgPack({ ok: true, result: { items: [] } })), 300),
    });
    try {
      for (const cursor of [undefined, "not-a-cursor"]) {
        const dan = await TestClient.as(gw.port, "dan", cursor);
        // In the tick of the 'open' event (as(…) resolves from its handler): long before the welcome.
        dan.send("not json");
        dan.send({ type: "UpdateProgress", request_id: "r1", course_id: "drawing", progress: 10 });
        await dan.ack("r1");
        const first = cursor === undefined ? ["welcome"] : ["reset", "welcome"];
        expect(dan.frames.map((f) => f.type)).toEqual([...first, "ack", "ack"]);
        // No service here: the command path does not answer, but the ack still comes, in order.
        expect(dan.frames.slice(first.length).map((f) => [f.request_id, f.error?.code])).toEqual([
          [null, "invalid_request"],
          ["r1", "unavailable"],
        ]);
        await dan.close();
      }
    } finally {
      slow.unsubscribe();
      await gw.close();
    }
  });

  it("keeps what it holds before the welcome bounded: the in-flight limit still refuses, a flood is closed with 4408", async () => {
    const gw = await startTestGateway(nats.url, { maxInflightCommands: 2, maxBufferedBytes: 4096 });
    const slowQuery = nc.subscribe("query.access.GetLearnerProgress", {
      callback: (_err, msg) => void setTimeout(() => msg.respond(encodeMsgPack({ ok: true, result: { items: [] } })), 300),
    });
    // A command path that answers after 100 ms: both commands are still in flight when the third comes.
    const slowCommands = nc.subscribe("cmd.access.UpdateProgress.*", {
      callback: (_err, msg) =>
        void setTimeout(() => msg.respond(encodeMsgPack({ ok: true, aggregate_id: msg.subject.split(".").at(-1), aggregate_version: 2, events: [] })), 100),
    });
    try {
      const erin = await TestClient.as(gw.port, "erin");
      for (const r of ["r1", "r2", "r3"]) erin.send({ type: "UpdateProgress", request_id: r, course_id: "etching", progress: 5 });
      await erin.until((c) => c.frames.filter((f) => f.type === "ack").length === 3);
      expect(erin.frames.map((f) => [f.type, f.request_id, f.ok])).toEqual([
        ["welcome", undefined, undefined],
        ["ack", "r3", false], // refused at once, as beyond the limit, but held behind the welcome
        ["ack", "r1", true],
        ["ack", "r2", true],
      ]);
      expect(erin.frames[1]!.error).toMatchObject({ code: "unavailable", message: "at most 2 commands in flight per connection" });
      await erin.close();

      // 100 invalid frames' acks (about 80 bytes each) are more than 4 KiB to hold for a socket not yet welcomed.
      const fay = await TestClient.as(gw.port, "fay");
      for (let i = 0; i < 100; i++) fay.send("not json");
      expect((await fay.closedWith()).code).toBe(4408);
      expect(fay.frames).toEqual([]);
    } finally {
      slowQuery.unsubscribe();
      slowCommands.unsubscribe();
      await gw.close();
    }
  });

  it("comes from the stream alone when GetLearnerProgress is not answered", async () => {
    const forge = new EventForge(nc);
    await forge.publish("CourseAccessGranted", "ada", "algebra", { expires_at: "2099-01-01T00:00:00.000Z" });
    await forge.publish("ProgressUpdated", "ada", "algebra", { progress: 40 });
    await forge.publish("CourseAccessGranted", "ada", "art", { expires_at: null });
    await forge.publish("AccessRevoked", "ada", "art", { reason: "refund" });
    const gw = await startTestGateway(nats.url);
    try {
      const ada = await TestClient.as(gw.port, "ada");
      expect((await ada.welcome()).progress).toEqual([
        { ...view("ada", "algebra", 40, 2), expires_at: "2099-01-01T00:00:00.000Z" },
        { ...view("ada", "art", 0, 2), status: "revoked" },
      ]);
      await ada.close();
    } finally {
      await gw.close();
    }
  });

  it("adds records older than the replayed window from GetLearnerProgress", async () => {
    const forge = new EventForge(nc);
    await forge.publish("CourseAccessGranted", "bob", "biology", { expires_at: null });
    await forge.publish("ProgressUpdated", "bob", "biology", { progress: 30 });
    await sleep(1200);
    const gw = await startTestGateway(nats.url, { replayMs: 1000 }); // the window holds none of it
    const fake = fakeLearnerProgress((u) => (u === "bob" ? [view("bob", "biology", 30, 2)] : []));
    try {
      const bob = await TestClient.as(gw.port, "bob");
      expect((await bob.welcome()).progress).toEqual([view("bob", "biology", 30, 2)]);
      await forge.publish("ProgressUpdated", "bob", "biology", { progress: 35 });
      await bob.eventCount(1);
      expect(bob.events[0]!.event.aggregate_version).toBe(3);
      await bob.close();
    } finally {
      fake.stop();
      await gw.close();
    }
  });

  it("shows the query's record, not a placeholder, for a record granted before the replayed window", async () => {
    const forge = new EventForge(nc);
    await forge.publish("CourseAccessGranted", "dora", "dance", { expires_at: "2099-01-01T00:00:00.000Z" });
    await forge.publish("ProgressUpdated", "dora", "dance", { progress: 100 });
    await forge.publish("CourseCompleted", "dora", "dance");
    await forge.publish("CourseAccessGranted", "dora", "drama", { expires_at: "2099-01-01T00:00:00.000Z" });
    await forge.publish("ProgressUpdated", "dora", "drama", { progress: 30 });
    await sleep(1200);
    const gw = await startTestGateway(nats.url, { replayMs: 1000 }); // the window holds none of it
    // Inside the window: dance's expiry moved by a grant again (v4), drama's progress (v3). The gateway
    // begins both from a placeholder: progress 0, not completed, no expiry, no order.
    await forge.publish("CourseAccessGranted", "dora", "dance", { expires_at: "2100-01-01T00:00:00.000Z" });
    const seq = await forge.publish("ProgressUpdated", "dora", "drama", { progress: 35 });
    await until("the gateway read them", () => gw.log.head >= seq);
    const dance = (progress: number, version: number, expires_at: string) => ({ ...view("dora", "dance", progress, version), completed: true, expires_at });
    const drama = (progress: number, version: number) => ({ ...view("dora", "drama", progress, version), expires_at: "2099-01-01T00:00:00.000Z", order_id: "o2" });
    let items = [dance(100, 4, "2100-01-01T00:00:00.000Z"), drama(35, 3)];
    const fake = fakeLearnerProgress(() => items);
    try {
      // At the gateway's versions: the query's records.
      const first = await TestClient.as(gw.port, "dora");
      expect((await first.welcome()).progress).toEqual(items);
      await first.close();
      // A query one version behind: its records, with what the gateway's newer events set on top.
      items = [dance(100, 3, "2099-01-01T00:00:00.000Z"), drama(30, 2)];
      const second = await TestClient.as(gw.port, "dora");
      expect((await second.welcome()).progress).toEqual([dance(100, 4, "2100-01-01T00:00:00.000Z"), drama(35, 3)]);
      await second.close();
      // No query: the gateway's own, placeholder and all (the fallback; nothing better is known).
      fake.stop();
      await nc.flush();
      const third = await TestClient.as(gw.port, "dora");
      expect((await third.welcome()).progress).toEqual([
        { ...view("dora", "dance", 0, 4), expires_at: "2100-01-01T00:00:00.000Z" },
        view("dora", "drama", 35, 3),
      ]);
      await third.close();
    } finally {
      fake.stop();
      await gw.close();
    }
  });

  it("stays whole for a learner while other learners' GetLearnerProgress fails", async () => {
    const forge = new EventForge(nc);
    await forge.publish("CourseAccessGranted", "yan", "geology", { expires_at: "2099-01-01T00:00:00.000Z" });
    await sleep(1200);
    const gw = await startTestGateway(nats.url, { replayMs: 1000, queryTimeoutMs: 300 }); // the window holds none of it
    const yan = { ...view("yan", "geology", 0, 1), expires_at: "2099-01-01T00:00:00.000Z" };
    // xav's query is answered with an error (internal), zed's with a reply that is not the contract's, wyn's not at all.
    const sub = nc.subscribe("query.access.GetLearnerProgress", {
      callback: (_err, msg) => {
        const body = decodeMsgPack(msg.data);
        const user = body.ok ? (body.value as { user_id: string }).user_id : "";
        if (user === "xav") msg.respond(encodeMsgPack({ ok: false, error: { code: "internal", message: "GetLearnerProgress failed" } }));
        else if (user === "zed") msg.respond(encodeMsgPack({ ok: true, result: { rows: [] } }));
        else if (user !== "wyn") msg.respond(encodeMsgPack({ ok: true, result: { items: user === "yan" ? [yan] : [] } }));
      },
    });
    await nc.flush();
    try {
      for (const other of ["xav", "zed", "wyn"]) {
        const c = await TestClient.as(gw.port, other);
        expect((await c.welcome()).progress).toEqual([]);
        await c.close();
        const y = await TestClient.as(gw.port, "yan");
        expect((await y.welcome()).progress).toEqual([yan]);
        await y.close();
      }
    } finally {
      sub.unsubscribe();
      await gw.close();
    }
  });

  it("merges by version: a lagging query loses to the stream, one ahead of it suppresses events it already shows", async () => {
    const forge = new EventForge(nc);
    await forge.publish("CourseAccessGranted", "carol", "chemistry", { expires_at: null });
    await forge.publish("ProgressUpdated", "carol", "chemistry", { progress: 10 });
    await forge.publish("ProgressUpdated", "carol", "chemistry", { progress: 20 }); // v3
    await forge.publish("CourseAccessGranted", "carol", "cooking", { expires_at: null }); // v1
    const gw = await startTestGateway(nats.url);
    // chemistry: the projection lags (v2); cooking: the aggregate is at v3, its events not yet in the stream.
    const fake = fakeLearnerProgress(() => [view("carol", "chemistry", 10, 2), view("carol", "cooking", 60, 3)]);
    try {
      const carol = await TestClient.as(gw.port, "carol");
      expect((await carol.welcome()).progress).toEqual([view("carol", "chemistry", 20, 3), view("carol", "cooking", 60, 3)]);
      await forge.publish("ProgressUpdated", "carol", "cooking", { progress: 50 }); // v2: in the welcome already
      await forge.publish("ProgressUpdated", "carol", "cooking", { progress: 60 }); // v3: in the welcome already
      await forge.publish("ProgressUpdated", "carol", "cooking", { progress: 70 }); // v4: new
      await carol.eventCount(1);
      await sleep(150);
      expect(carol.events.map((f) => [f.event.aggregate_version, f.event.payload.progress])).toEqual([[4, 70]]);
      await carol.close();
    } finally {
      fake.stop();
      await gw.close();
    }
  });
});
