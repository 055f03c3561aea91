/**
 * A replay (ConsumerManager.replay) against a real nats-server and a real SQLite read model: it reports
 * done only after reading a new durable from the stream's start, never after a deletion that failed; a
 * replay that fails leaves the consumer running; a second replay of the consumer while one runs is
 * refused, and a replay ends once the consumer no longer runs here. The failures are the server's own:
 * users whose permissions deny the consumer's deletion, or the read of the stream's last message.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { EnvelopeBase } from "../../contracts/index.js";
import { ConsumerManager, type ReplayProgress, type Subscriber } from "../../src/consumers/index.js";
import { ensureStreams } from "../../src/nats/index.js";
import { catalogCourse } from "../../src/projections/index.js";
import { startNatsServer, until, type NatsServerHandle } from "../support/index.js";
import { envelope, publishEvent, openReadModels, quiet, type ReadModels } from "../projections/fixtures.js";

const CONF = `
authorization {
  users = [
    { user: admin, password: admin }
    { user: nodelete, password: nodelete, permissions: { publish: { allow: [">"], deny: ["$JS.API.CONSUMER.DELETE.>"] } } }
    { user: nomsgget, password: nomsgget, permissions: { publish: { allow: [">"], deny: ["$JS.API.STREAM.MSG.GET.>"] } } }
  ]
}
`;
const COURSES = 30;

let dir: string;
let nats: NatsServerHandle;
let admin: NatsConnection;
let adminJsm: JetStreamManager;
let nc: NatsConnection | undefined;
let m: ReadModels | undefined;
let consumers: ConsumerManager | undefined;

const created = (id: string): EnvelopeBase => envelope("CourseCreated", id, 1, { course_id: id, title: `Course ${id}`, instructor_id: "i1", policy_id: "p1" });
const publishCourse = (id: string) => publishEvent(admin, created(id));
const courses = async () => Number((await m!.db.execute<{ n: number }>("select count(*) as n from catalog_courses", [], "get")).n);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nerve-replay-"));
  await writeFile(join(dir, "nats.conf"), CONF);
  nats = await startNatsServer({ config: join(dir, "nats.conf") });
  admin = await connect({ servers: nats.url, user: "admin", pass: "admin", noAsyncTraces: true });
  adminJsm = await jetstreamManager(admin);
  await ensureStreams(adminJsm);
  for (let i = 0; i < COURSES; i++) await publishCourse(`c-${i}`);
});
afterAll(async () => {
  await admin?.close();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await consumers?.stop();
  await nc?.close();
  await m?.close();
  await adminJsm.consumers.delete("EVENTS_COURSES", "catalog").catch(() => false);
});

/** The catalog (as `wrap` makes it) under its consumer manager, connected as `user`, started and caught up with the stream. */
async function startCatalog(user: string, wrap: (s: Subscriber) => Subscriber = (s) => s): Promise<ConsumerManager> {
  nc = await connect({ servers: nats.url, user, pass: user, noAsyncTraces: true });
  m = await openReadModels();
  consumers = new ConsumerManager({ db: m.db, js: jetstream(nc), jsm: await jetstreamManager(nc), logger: quiet, subscribers: [wrap(m.subscriber("catalog"))], lagLogMs: 0 });
  await consumers.start();
  await until("the catalog is caught up", async () => (await courses()) >= COURSES);
  return consumers;
}

describe("replay", () => {
  it("rebuilds the read model from a new durable at the stream's start, also when the durable is gone", async () => {
    const c = await startCatalog("admin");
    await m!.db.execute("update catalog_courses set title = 'tampered'", [], "run");
    const done = await c.replay("catalog");
    expect(done.done).toBe(done.total);
    expect(done.total).toBeGreaterThanOrEqual(COURSES);
    expect(await courses()).toBeGreaterThanOrEqual(COURSES);
    expect((await catalogCourse(m!.tx, "c-0"))?.title).toBe("Course c-0");

    // No durable at all (removed by hand while the runner was stopped): nothing to delete, and the replay goes on.
    await c.runners.get("catalog")!.stop();
    await adminJsm.consumers.delete("EVENTS_COURSES", "catalog");
    const again = await c.replay("catalog");
    expect(again.done).toBe(again.total);
    expect((await catalogCourse(m!.tx, `c-${COURSES - 1}`))?.title).toBe(`Course c-${COURSES - 1}`);
  });

  it("refuses a second replay of the consumer while one runs, and takes one again once it has ended", async () => {
    const c = await startCatalog("admin");
    const first = c.replay("catalog");
    // Before, the second one stopped the runner and emptied the read model under the first one's progress.
    await expect(c.replay("catalog")).rejects.toMatchObject({ code: "conflict", message: expect.stringMatching(/a replay of catalog is running on this instance/) });
    const done = await first;
    expect(done.done).toBe(done.total);
    const again = await c.replay("catalog");
    expect(again.done).toBe(again.total);
    expect(await courses()).toBeGreaterThanOrEqual(COURSES);
  });

  it("fails, with the read model kept and the consumer running, when the old durable cannot be deleted", async () => {
    const c = await startCatalog("nodelete");
    const floorBefore = (await adminJsm.consumers.info("EVENTS_COURSES", "catalog")).ack_floor.stream_seq;
    await expect(c.replay("catalog")).rejects.toThrow(/permissions violation/i);
    expect(await courses()).toBeGreaterThanOrEqual(COURSES);
    // The old durable reads on, from where it was.
    expect((await adminJsm.consumers.info("EVENTS_COURSES", "catalog")).ack_floor.stream_seq).toBeGreaterThanOrEqual(floorBefore);
    await publishCourse("after-failed-delete");
    await until("the consumer applies what comes next", async () => (await catalogCourse(m!.tx, "after-failed-delete")) !== undefined);
  });

  it("leaves the consumer running, and so the read model rebuilt, when a step after the stop fails", async () => {
    const c = await startCatalog("nomsgget");
    await expect(c.replay("catalog")).rejects.toThrow(/permissions violation/i);
    expect(c.runners.get("catalog")!.running).toBe(true);
    await publishCourse("after-failed-replay");
    await until("the consumer applies what comes next", async () => (await catalogCourse(m!.tx, "after-failed-replay")) !== undefined);
    await until("the read model is whole again", async () => (await courses()) >= COURSES + 1);
  });

  it("ends, unavailable, once the consumer no longer runs here (the service stopping) instead of waiting for ever", async () => {
    let slow = false;
    const c = await startCatalog("admin", (s) => ({
      ...s,
      async apply(e, tx) {
        if (slow) await new Promise((r) => setTimeout(r, 5));
        await s.apply!(e, tx);
      },
    }));
    // More than the runner pulls at once (256): a stop leaves most of the replay unread.
    for (let i = 0; i < 600; i++) await publishCourse(`many-${i}`);
    await until("the catalog is caught up", async () => (await courses()) >= COURSES + 600);
    slow = true;
    let first!: (p: ReplayProgress) => void;
    const reported = new Promise<ReplayProgress>((r) => (first = r));
    const replay = c.replay("catalog", first).then(
      (p) => p,
      (err: unknown) => err as Error,
    );
    expect((await reported).done).toBeLessThan(COURSES + 600);
    await c.stop();
    // Before, it went on reading a floor that no longer moved (and so, once replays are one at a time, kept every later one out).
    const outcome = await Promise.race([replay, new Promise<"still running">((r) => setTimeout(() => r("still running"), 5_000))]);
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/consumer catalog no longer runs here/);
  });
});
