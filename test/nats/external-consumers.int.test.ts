/**
 * External subscribers (CONTRACT.md §2): their durables are provisioned from NERVE_EXTERNAL_CONSUMERS,
 * and an analytics job reading them at full speed takes nothing away from Nerve's read models.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, type ConsumerMessages } from "@nats-io/jetstream";
import { decode } from "@msgpack/msgpack";
import { Streams, deriveAccessId } from "../../contracts/index.js";
import { DEV_EXTERNAL_CONSUMERS, parseExternalConsumers } from "../../src/config/index.js";
import { ExternalConsumerConflictError, ensureExternalConsumers } from "../../src/nats/index.js";
import { startTestNerve, type TestNerve } from "../support/index.js";
import { ask, caughtUp, eventually, ok } from "../e2e/story.js";

const CONF = fileURLToPath(new URL("../../nats.conf", import.meta.url));
const LEARNERS = 40;
const EUR = (amount: number) => ({ amount, currency: "EUR" });

let t: TestNerve;
let analytics: NatsConnection;

beforeAll(async () => {
  t = await startTestNerve({ NERVE_EXTERNAL_CONSUMERS: DEV_EXTERNAL_CONSUMERS }, { natsConf: CONF });
  analytics = await connect({ servers: t.nats.url, user: "analytics", pass: "analytics-dev", noAsyncTraces: true });
});
afterAll(async () => {
  await analytics?.close();
  await t?.close();
});

/** Pulls and acks every `bi` durable as fast as it can, counting the events by type, until stopped. */
async function externalReader(nc: NatsConnection) {
  const seen = new Map<string, number>();
  const iterators: ConsumerMessages[] = [];
  const loops = Object.values(Streams).map(async (s) => {
    const messages = await (await jetstream(nc).consumers.get(s.name, "bi")).consume({ max_messages: 512 });
    iterators.push(messages);
    for await (const m of messages) {
      const type = (decode(m.data) as { event_type: string }).event_type;
      seen.set(type, (seen.get(type) ?? 0) + 1);
      m.ack();
    }
  });
  return {
    seen,
    async stop() {
      for (const it of iterators) await it.close();
      await Promise.all(loops);
    },
  };
}

describe("external subscribers", () => {
  it("provisions bi on all five streams at start, each filtered to its stream", async () => {
    for (const s of Object.values(Streams)) {
      const info = await (await jetstreamManager(t.nerve.nc)).consumers.info(s.name, "bi");
      expect(info.config).toMatchObject({ durable_name: "bi", filter_subject: s.subjects, ack_policy: AckPolicy.Explicit });
    }
  });

  it("a reader pulling and acking bi at full speed leaves Nerve's read models as the story makes them", async () => {
    const reader = await externalReader(analytics);
    await ok(t, "policies", "CreatePolicy", "pol-std", { name: "Standard", type: "standard", refund_period_days: 14 });
    await ok(t, "courses", "CreateCourse", "c-ts", { title: "TypeScript", instructor_id: "i-1", policy_id: "pol-std", description: "", price: EUR(4900) });
    const learners = Array.from({ length: LEARNERS }, (_, i) => `u-${i}`);
    await Promise.all(
      learners.map(async (u, i) => {
        await ok(t, "users", "RegisterUser", u, { email: `${u}@example.com`, name: u });
        await ok(t, "orders", "PlaceOrder", `o-${i}`, { user_id: u, course_ids: ["c-ts"], total_amount: EUR(4900) });
        await ok(t, "orders", "MarkOrderPaid", `o-${i}`, { payment_id: `pay-${i}` });
        const access = deriveAccessId(u, "c-ts");
        await eventually(() => ask(t, "GetAccess", { access_id: access }));
        await ok(t, "access", "UpdateProgress", access, { progress: 100 });
      }),
    );
    await caughtUp(t);
    // Expected from the story: every learner completed the one course.
    expect(await ask(t, "CourseStats", { course_id: "c-ts" })).toEqual({ course_id: "c-ts", learners: LEARNERS, completions: LEARNERS, average_progress: 100 });
    for (const u of learners) {
      expect((await ask(t, "ListCertificates", { user_id: u })).items).toEqual([expect.objectContaining({ course_id: "c-ts" })]);
      expect((await ask(t, "ListNotifications", { user_id: u })).items.filter((n: { kind: string }) => n.kind === "welcome")).toHaveLength(1);
    }
    // …while the external reader got every event too, at least once.
    await eventually(() => {
      expect(reader.seen.get("UserRegistered")).toBeGreaterThanOrEqual(LEARNERS);
      expect(reader.seen.get("OrderPaid")).toBeGreaterThanOrEqual(LEARNERS);
      expect(reader.seen.get("CourseCompleted")).toBeGreaterThanOrEqual(LEARNERS);
    });
    await reader.stop();
  });

  it("leaves an existing external durable as it is (position and tuning), and refuses one that conflicts", async () => {
    const jsm = await jetstreamManager(t.nerve.nc);
    const before = await jsm.consumers.info("EVENTS_USERS", "bi");
    expect(before.ack_floor.stream_seq).toBeGreaterThan(0);
    await jsm.consumers.update("EVENTS_USERS", "bi", { max_ack_pending: 77 });
    await ensureExternalConsumers(jsm, parseExternalConsumers(DEV_EXTERNAL_CONSUMERS));
    const after = await jsm.consumers.info("EVENTS_USERS", "bi");
    expect(after.ack_floor.stream_seq).toBe(before.ack_floor.stream_seq);
    expect(after.config.max_ack_pending).toBe(77);

    const err = await ensureExternalConsumers(jsm, parseExternalConsumers("bi:events.users.UserRegistered.*")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExternalConsumerConflictError);
    expect((err as Error).message).toContain("bi on EVENTS_USERS filters events.users.>, configured events.users.UserRegistered.*");
    expect((err as Error).message).toContain("nats consumer rm EVENTS_USERS bi");
    expect((await jsm.consumers.info("EVENTS_USERS", "bi")).config.filter_subject).toBe("events.users.>");
  });
});
