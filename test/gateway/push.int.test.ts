import { describe, expect, it } from "vitest";
import { EventSchemas, ServerFrame, decodeMsgPack, deriveAccessId, encodeMsgPack } from "../../contracts/index.js";
import { jetstream } from "@nats-io/jetstream";
import { command, type TestNerve } from "../support/index.js";
import { accessEventMessage } from "../support/access-events.js";
import { TestClient, grant, progress, useNerveAndGateway, type TestGateway } from "./support.js";

let t: TestNerve;
let gw: TestGateway;
useNerveAndGateway((started) => ({ t, gw } = started));

describe("live push", () => {
  it("welcomes a learner with their access records and a cursor, then pushes their events in order", async () => {
    await grant(t.client, "ada", "algebra");
    await progress(t.client, "ada", "algebra", 10);
    const ada = await TestClient.as(gw.port, "ada");
    const welcome = await ada.welcome();
    expect(ServerFrame.parse(welcome)).toBeTruthy();
    expect(welcome.user_id).toBe("ada");
    // The welcome may come before the two events reach JetStream; then they follow as event frames.
    await ada.until((c) => {
      const fromWelcome = c.frames[0]?.progress?.find((p: any) => p.course_id === "algebra")?.progress ?? 0;
      const fromEvents = c.events.filter((f) => f.event.event_type === "ProgressUpdated").map((f) => f.event.payload.progress);
      return Math.max(fromWelcome, ...fromEvents) === 10;
    });

    await progress(t.client, "ada", "algebra", 40);
    await progress(t.client, "ada", "algebra", 100);
    const events = await ada.until((c) => c.events.some((f) => f.event.event_type === "CourseCompleted")).then(() => ada.events);
    const tail = events.slice(-3).map((f) => [f.event.event_type, f.event.payload.progress]);
    expect(tail).toEqual([["ProgressUpdated", 40], ["ProgressUpdated", 100], ["CourseCompleted", undefined]]);
    for (const f of events) {
      expect(ServerFrame.parse(f).type).toBe("event");
      expect(EventSchemas[f.event.event_type as "ProgressUpdated"].parse(f.event).aggregate_id).toBe(deriveAccessId("ada", "algebra"));
    }
    const cursors = events.map((f) => f.cursor!);
    expect(new Set(cursors).size).toBe(cursors.length);
    await ada.close();
  });
});

describe("who sees what", () => {
  it("pushes all five learner event types, to every socket of the learner", async () => {
    const tab1 = await TestClient.as(gw.port, "bob");
    const tab2 = await TestClient.as(gw.port, "bob");
    await Promise.all([tab1.welcome(), tab2.welcome()]);
    await grant(t.client, "bob", "biology");
    await progress(t.client, "bob", "biology", 100);
    await command(t.client, "access", "RevokeCourseAccess", deriveAccessId("bob", "biology"), { reason: "order_refunded" });
    await grant(t.client, "bob", "botany", new Date(Date.now() + 1500).toISOString());
    const types = ["CourseAccessGranted", "ProgressUpdated", "CourseCompleted", "AccessRevoked", "CourseAccessGranted", "AccessExpired"];
    for (const tab of [tab1, tab2]) {
      await tab.eventCount(types.length, 15_000);
      expect(tab.events.map((f) => f.event.event_type)).toEqual(types);
    }
    expect(tab2.events.map((f) => f.cursor)).toEqual(tab1.events.map((f) => f.cursor));
    await Promise.all([tab1.close(), tab2.close()]);
  });

  it("takes an event's type from its subject, as the consumers do, not from the Event-Type header", async () => {
    const tab = await TestClient.ready(gw.port, "cyd");
    await grant(t.client, "cyd", "chemistry");
    await tab.eventCount(1, 15_000);
    const access_id = deriveAccessId("cyd", "chemistry");
    const e = accessEventMessage("ProgressUpdated", { access_id, user_id: "cyd", course_id: "chemistry" }, 2, { progress: 40 });
    // The header block is not read (decoding it cost each event a few µs): a header that says otherwise is not believed.
    e.headers.set("Event-Type", "CourseCompleted");
    await jetstream(t.client).publish(e.subject, e.data, { headers: e.headers });
    await tab.eventCount(2, 15_000);
    expect(tab.events.map((f) => [f.event.event_type, f.event.aggregate_version])).toEqual([
      ["CourseAccessGranted", 1],
      ["ProgressUpdated", 2],
    ]);
    await tab.close();
  });

  it("pushes an event of a version newer than it knows (a rolling upgrade) as it was written", async () => {
    const tab = await TestClient.ready(gw.port, "newer");
    await grant(t.client, "newer", "geology");
    await tab.eventCount(1, 15_000);
    const access_id = deriveAccessId("newer", "geology");
    const e = accessEventMessage("ProgressUpdated", { access_id, user_id: "newer", course_id: "geology" }, 2, { progress: 40 });
    const envelope = decodeMsgPack(e.data);
    if (!envelope.ok) throw new Error("undecodable");
    const v2: Record<string, any> = { ...(envelope.value as Record<string, any>), event_version: 2 };
    v2.payload = { ...v2.payload, source: "mobile" };
    e.headers.set("Event-Version", "2");
    await jetstream(t.client).publish(e.subject, encodeMsgPack(v2), { headers: e.headers });
    await tab.eventCount(2, 15_000);
    expect(tab.events[1]!.event).toMatchObject({ event_type: "ProgressUpdated", event_version: 2, aggregate_version: 2, payload: { progress: 40, source: "mobile" } });
    await tab.close();
  });

  it("never shows one learner's events to another", async () => {
    const carol = await TestClient.as(gw.port, "carol");
    const dave = await TestClient.as(gw.port, "dave");
    await Promise.all([carol.welcome(), dave.welcome()]);
    await grant(t.client, "carol", "chemistry");
    await grant(t.client, "dave", "drawing");
    for (let p = 10; p <= 50; p += 10) {
      await progress(t.client, "carol", "chemistry", p);
      await progress(t.client, "dave", "drawing", p + 1);
    }
    await Promise.all([carol.eventCount(6), dave.eventCount(6)]);
    await new Promise((r) => setTimeout(r, 200));
    expect(carol.events.every((f) => f.event.payload.user_id === "carol")).toBe(true);
    expect(dave.events.every((f) => f.event.payload.user_id === "dave")).toBe(true);
    expect(carol.events).toHaveLength(6);
    expect(dave.events).toHaveLength(6);
    expect(dave.events.at(-1)!.event.payload.progress).toBe(51);
    await Promise.all([carol.close(), dave.close()]);
  });

  it("welcomes with the records as of the cursor, whatever answered GetLearnerProgress", async () => {
    await grant(t.client, "erin", "economics");
    await progress(t.client, "erin", "economics", 70);
    // Wait until the gateway has read both events, so the welcome reflects them.
    const watcher = await TestClient.as(gw.port, "erin");
    await watcher.until((c) => (c.frames[0]?.progress?.[0]?.progress ?? 0) === 70 || c.events.some((f) => f.event.payload.progress === 70));
    await watcher.close();
    const erin = await TestClient.as(gw.port, "erin");
    const welcome = await erin.welcome();
    expect(welcome.progress).toEqual([
      { access_id: deriveAccessId("erin", "economics"), user_id: "erin", course_id: "economics", status: "active", progress: 70, completed: false, expires_at: null, order_id: null, version: 2 },
    ]);
    expect(welcome.cursor).toMatch(/^s[0-9a-z]+$/);
    await erin.close();
  });
});
