/**
 * The runner's lifecycle against a real nats-server and a real SQLite read model: a stop ends every
 * reader, also one its supervisor is starting again at that moment, and never leaves one pulling; a
 * start while it runs or starts opens no second reader of a durable (two readers of one durable in one
 * process hold each other's acks for good, FloorAcks), and a stop during a start leaves nothing running.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import type { EnvelopeBase } from "../../contracts/index.js";
import { ConsumerRunner, DeadLetters, EventHandler } from "../../src/consumers/index.js";
import { catalogCourse } from "../../src/projections/index.js";
import { backgroundFailures } from "../../src/supervision/index.js";
import { captureLog, until, useNatsWithStreams, type LogLine, type NatsServerHandle } from "../support/index.js";
import { envelope, publishEvent, openReadModels, type ReadModels } from "../projections/fixtures.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;
let m: ReadModels;
let runner: ConsumerRunner;
let lines: LogLine[];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const created = (id: string): EnvelopeBase => envelope("CourseCreated", id, 1, { course_id: id, title: `Course ${id}`, instructor_id: "i1", policy_id: "p1" });

const floorOf = async () => (await jsm.consumers.info("EVENTS_COURSES", "catalog")).ack_floor.stream_seq;
const lastSeq = async () => (await jsm.streams.info("EVENTS_COURSES")).state.last_seq;

const publishCourse = (id: string) => publishEvent(nc, created(id));

useNatsWithStreams((h) => ({ nats, nc, jsm } = h));

beforeEach(async () => {
  m = await openReadModels();
  const log = captureLog("info");
  lines = log.lines;
  // Watched, so that each open reader shows in `backlogs`.
  const watched = { limit: 1_000_000, changed: () => {} };
  runner = new ConsumerRunner(jetstream(nc), jsm, new EventHandler(m.db, m.subscriber("catalog")), new DeadLetters(m.db), log.logger, { maxDeliver: 3, backoffMs: [50] }, watched);
});
afterEach(async () => {
  await runner?.stop();
  await jsm.consumers.delete("EVENTS_COURSES", "catalog").catch(() => false);
  await m?.close();
});

describe("ConsumerRunner.stop", () => {
  it("ends a reader its supervisor is starting again meanwhile: stop() resolves, and nothing reads the durable after it", async () => {
    await runner.start();
    const task = "consumer catalog on EVENTS_COURSES";
    const before = backgroundFailures.get(task) ?? 0;
    await jsm.consumers.delete("EVENTS_COURSES", "catalog");
    await until("the loop's end is reported", () => (backgroundFailures.get(task) ?? 0) > before, 10_000, 2);
    // Frozen before the restart (200 ms after the report) looks for its durable: ensure()'s requests time
    // out and it retries them, as during a leader election.
    process.kill(nats.pid, "SIGSTOP");
    let frozen = true;
    try {
      await until("the restart's ensure() retries", () => lines.some((l) => l.msg?.includes("JetStream is unavailable for now") === true), 20_000);
      const stopped = runner.stop().then(() => "stopped");
      await sleep(300);
      process.kill(nats.pid, "SIGCONT");
      frozen = false;
      expect(await Promise.race([stopped, sleep(15_000).then(() => "still running after 15 s")])).toBe("stopped");
    } finally {
      if (frozen) process.kill(nats.pid, "SIGCONT");
    }
    // No reader is left behind: an event published now stays unread.
    await publishCourse("after-stop");
    await sleep(1500);
    expect(await catalogCourse(m.tx, "after-stop")).toBeUndefined();
  }, 60_000);
});

describe("ConsumerRunner.start", () => {
  it("opens one reader per binding, however often and however concurrently it is called", async () => {
    await Promise.all([runner.start(), runner.start()]);
    await runner.start();
    expect(runner.backlogs.size).toBe(runner.bindings.length);
    for (let i = 0; i < 40; i++) await publishCourse(`once-${i}`);
    const last = await lastSeq();
    await until("the floor reaches the stream's last event", async () => (await floorOf()) === last);
    expect(runner.stats.ackHolds).toBe(0);
    await runner.stop();
    expect(runner.backlogs.size).toBe(0);
  });

  it("leaves nothing running when the runner stops while it starts, and starts afresh after", async () => {
    const starting = runner.start();
    await runner.stop();
    await starting;
    await sleep(500);
    expect(runner.backlogs.size).toBe(0);
    await publishCourse("stopped-while-starting");
    await sleep(1000);
    expect(await catalogCourse(m.tx, "stopped-while-starting")).toBeUndefined();

    await runner.start();
    await until("the event is applied by the new start", async () => (await catalogCourse(m.tx, "stopped-while-starting")) !== undefined);
    expect(runner.backlogs.size).toBe(runner.bindings.length);
  });
});
