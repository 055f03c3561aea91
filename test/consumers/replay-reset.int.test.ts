/**
 * A replay's reset on a real PostgreSQL and a real nats-server: no runner start lands between the replay's
 * stop and its own start — not a takeover's, whose delay ends during the reset, nor one from elsewhere — so
 * a replay never reports done on a read model whose rows the reset deleted after the new durable had
 * acknowledged them; and the reset is fenced by the consumer's lease, so an instance that lost it deletes
 * nothing of its next holder's.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import type { EnvelopeBase } from "../../contracts/index.js";
import { CONSUMER_GROUP, ConsumerManager, consumerEntities, txOf, type Subscriber, type Tx } from "../../src/consumers/index.js";
import { Leases, clusterEntities, leaseName } from "../../src/cluster/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { catalogCourse, createSubscribers, readModelEntities } from "../../src/projections/index.js";
import { postgresAvailable, tempPostgres, until, useNatsWithStreams, type TempPostgres } from "../support/index.js";
import { FakeBus, envelope, publishEvent, quiet } from "../projections/fixtures.js";

const available = await postgresAvailable();
const COURSES = 20;
const created = (id: string): EnvelopeBase => envelope("CourseCreated", id, 1, { course_id: id, title: `Course ${id}`, instructor_id: "i1", policy_id: "p1" });

let nc: NatsConnection;
let jsm: JetStreamManager;
useNatsWithStreams((h) => ({ nc, jsm } = h));

describe.skipIf(!available)("a replay's reset", () => {
  let pg: TempPostgres;
  let db: Database;
  let consumers: ConsumerManager | undefined;
  let leases: Leases | undefined;

  beforeEach(async () => {
    pg = await tempPostgres();
    db = await openDatabase({ url: pg.url, entities: [...consumerEntities, ...readModelEntities, ...clusterEntities] });
    await jsm.streams.purge("EVENTS_COURSES");
    for (let i = 0; i < COURSES; i++) await publishEvent(nc, created(`c-${i}`));
  });
  afterEach(async () => {
    await consumers?.stop();
    consumers = undefined;
    leases = undefined;
    await db.close();
    await jsm.consumers.delete("EVENTS_COURSES", "catalog").catch(() => false);
    await pg.drop(); // last: it throws when the database stays behind
  });

  const count = async (sql: string) => Number((await db.execute<{ n: string }>(sql, [], "get")).n);
  const courses = () => count("select count(*) as n from catalog_courses");
  const inbox = () => count("select count(*) as n from consumer_inbox where consumer = 'catalog'");

  /** The catalog, its reset preceded by `before` (in the reset's transaction). */
  const catalogWith = (before: (tx: Tx) => Promise<void>): Subscriber => {
    const base = createSubscribers({ bus: new FakeBus().bus, db, logger: quiet }).find((s) => s.name === "catalog")!;
    return {
      ...base,
      async reset(tx) {
        await before(tx);
        await base.reset!(tx);
      },
    };
  };

  /** The catalog's consumer manager under a lease of instance "a". */
  const startLeased = async (catalog: Subscriber, takeoverDelayMs: number, lease: { ttlMs: number; renewEveryMs: number }) => {
    leases = new Leases({ db, instanceId: "a", logger: quiet, group: CONSUMER_GROUP, keys: ["catalog"], ...lease });
    consumers = new ConsumerManager({ db, js: jetstream(nc), jsm, logger: quiet, subscribers: [catalog], leases, takeoverDelayMs, lagLogMs: 0 });
    await consumers.start();
    await until("the lease is held", () => leases!.fence("catalog") !== undefined, 5_000, 20);
    return consumers;
  };

  it("keeps every event when a takeover's delay ends during the reset: the take's start waits for the replay's", async () => {
    // The former holder crashed: the take waits out its delay (1.5 s), which ends inside the reset (2.5 s).
    await db.execute("insert into nerve_leases (lease_key, owner, epoch, lease_until) values (?, 'crashed', 1, now() - interval '1 second')", [leaseName(CONSUMER_GROUP, "catalog")], "run");
    const c = await startLeased(
      catalogWith((tx) => tx.execute("select pg_sleep(2.5)", [], "all")),
      1500,
      { ttlMs: 5000, renewEveryMs: 500 },
    );
    const p = await c.replay("catalog");
    expect(p).toEqual({ consumer: "catalog", done: COURSES, total: COURSES });
    expect(await courses()).toBe(COURSES);
    expect(await inbox()).toBe(COURSES);

    // The take, once the replay had started the runner, joined it: one reader, which reads on.
    await until("the take has ended", () => c.active().includes("catalog"), 5_000, 20);
    await publishEvent(nc, created("after-replay"));
    await until("the next event is applied", async () => (await catalogCourse(txOf(db), "after-replay")) !== undefined, 10_000);
  }, 60_000);

  it("keeps every event when the runner is started from elsewhere during the reset: it is stopped and the reset done again", async () => {
    let startedInside = false;
    const catalog = catalogWith(async (tx) => {
      if (!startedInside) {
        startedInside = true;
        void consumers!.runners.get("catalog")!.start();
        // Long enough for that runner to apply and acknowledge the whole stream.
        await tx.execute("select pg_sleep(2)", [], "all");
      }
    });
    consumers = new ConsumerManager({ db, js: jetstream(nc), jsm, logger: quiet, subscribers: [catalog], lagLogMs: 0 });
    await consumers.start();
    await until("the catalog is caught up", async () => (await courses()) === COURSES);
    const p = await consumers.replay("catalog");
    expect(startedInside).toBe(true);
    expect(p).toEqual({ consumer: "catalog", done: COURSES, total: COURSES });
    expect(await courses()).toBe(COURSES);
    expect(await inbox()).toBe(COURSES);
  }, 60_000);

  it("releases the other consumers' leases at a stop during a replay's reset, and leaves the reset one to lapse", async () => {
    // The reset's fence holds catalog's lease row until it commits; the one release statement for all
    // waited for it past its lock_timeout (1 s) and failed: search's lease was left to lapse as well.
    const catalog = catalogWith((tx) => tx.execute("select pg_sleep(4)", [], "all"));
    const search = createSubscribers({ bus: new FakeBus().bus, db, logger: quiet }).find((s) => s.name === "search")!;
    leases = new Leases({ db, instanceId: "a", logger: quiet, group: CONSUMER_GROUP, keys: ["catalog", "search"], ttlMs: 30_000, renewEveryMs: 1_000 });
    consumers = new ConsumerManager({ db, js: jetstream(nc), jsm, logger: quiet, subscribers: [catalog, search], leases, takeoverDelayMs: 0, lagLogMs: 0 });
    await consumers.start();
    await until("both leases are held", () => leases!.fence("catalog") !== undefined && leases!.fence("search") !== undefined, 5_000, 20);
    const replay = consumers.replay("catalog").catch((err: unknown) => err as Error);
    await new Promise((r) => setTimeout(r, 1_500));
    await consumers.stop();
    consumers = undefined;
    const owner = async (key: string) => (await db.execute<{ owner: string | null }>("select owner from nerve_leases where lease_key = ?", [leaseName(CONSUMER_GROUP, key)], "get")).owner;
    expect(await owner("search")).toBeNull();
    expect(await owner("catalog")).toBe("a");
    expect(await replay).toBeInstanceOf(Error);
    await jsm.consumers.delete("EVENTS_COURSES", "search").catch(() => false);
  }, 60_000);

  it("deletes nothing when the lease moved to another instance that this one has not heard of yet", async () => {
    // Renewals far apart: this instance goes on believing it holds the lease for the whole test.
    const c = await startLeased(
      catalogWith(async () => {}),
      0,
      { ttlMs: 120_000, renewEveryMs: 60_000 },
    );
    await until("the catalog is caught up", async () => (await courses()) === COURSES);
    // Instance "b" took the lease (this one's lapsed in the database's view) and fills the read model.
    await db.execute("update nerve_leases set owner = 'b', epoch = epoch + 1, lease_until = now() + interval '1 minute' where lease_key = ?", [leaseName(CONSUMER_GROUP, "catalog")], "run");
    expect(leases!.fence("catalog")).toBeDefined();

    // Before, the reset emptied b's read model and the replay then waited for ever on commits fenced off.
    const outcome = await Promise.race([
      c.replay("catalog").then(
        (p) => p,
        (err: unknown) => err as Error,
      ),
      new Promise<"still running">((r) => setTimeout(() => r("still running"), 10_000)),
    ]);
    expect(await courses()).toBe(COURSES);
    expect(await inbox()).toBe(COURSES);
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/catalog moved to another instance before its reset: nothing was emptied/);
  }, 60_000);
});
