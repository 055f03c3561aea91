import { describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { deriveAccessId, encodeMsgPack, decodeMsgPack } from "../../contracts/index.js";
import { useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
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
  return { stop: () => sub.unsubscribe() };
}

describe("welcome", () => {
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
