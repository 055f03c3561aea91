/**
 * An instance joining a cluster on PostgreSQL takes no partition before its start's schema change (the
 * subscribers' setup: trigram indexes) is done. That change waits up to a minute for another instance's
 * under the schema lock, and builds indexes; an instance that had joined first was handed its share of the
 * partitions meanwhile and served none of them (no API yet): every command to them went unanswered.
 */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { PARTITION_GROUP, clusterEntities, leaseName, placeOf } from "../../src/cluster/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { SCHEMA_LOCK_KEY, openDatabase, underSchemaLock, type Database } from "../../src/persistence/index.js";
import { command, partitionOwners, postgresAvailable, startNatsServer, tempPostgres, until, type NatsServerHandle, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("a start on PostgreSQL beside a running instance", () => {
  let nats: NatsServerHandle;
  let pg: TempPostgres;
  let db: Database;
  let client: NatsConnection;
  const nerves: Nerve[] = [];
  const config = (id: string) => loadConfig({ NATS_URL: nats.url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", NERVE_INSTANCE_ID: id, LOG_LEVEL: "silent" });

  beforeAll(async () => {
    nats = await startNatsServer();
    pg = await tempPostgres();
    nerves.push(await startNerve(config("first"), createLogger("silent")));
    db = await openDatabase({ url: pg.url, entities: clusterEntities });
    client = await connect({ servers: nats.url, noAsyncTraces: true });
  });
  afterAll(async () => {
    await client?.close();
    for (const n of nerves.splice(0).reverse()) await n.stop().catch(() => undefined);
    await db?.close();
    await nats?.stop();
    await pg?.drop();
  });

  /** Requests for the schema lock waiting in this database. */
  const waitingForSchemaLock = async () =>
    Number(
      (
        await db.execute<{ n: string }>(
          "select count(*) as n from pg_locks where locktype = 'advisory' and objid = ? and not granted and database = (select oid from pg_database where datname = current_database())",
          [SCHEMA_LOCK_KEY],
          "get",
        )
      ).n,
    );

  /** Holds the schema lock (as another instance's schema change does) until the returned release is called. */
  const holdSchemaLock = (held: () => void) => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const done = underSchemaLock(db.connection, async () => {
      held();
      await released;
    });
    return { release, done };
  };

  it("joins the partitions' group only once its schema change is done; the running instance answers meanwhile", async () => {
    const first = nerves[0]!;
    await until("the first instance holds every partition", () => first.ownership.held().length === 64, 20_000);
    // The lock is held before the second start's open, which waits for it; a second holder queues behind
    // that open (PostgreSQL grants a lock in the order it was asked for). Released, the first holder lets
    // the open through, and the second holds the lock from the open's commit until after the setup asked.
    let firstHeld = false;
    let secondHeld = false;
    const a = holdSchemaLock(() => (firstHeld = true));
    let b: ReturnType<typeof holdSchemaLock> | undefined;
    let starting: Promise<Nerve> | undefined;
    try {
      await until("the first holder has the lock", () => firstHeld);
      starting = startNerve(config("second"), createLogger("silent"));
      starting.then((n) => nerves.push(n), () => undefined);
      await until("the second start's open waits for the schema lock", async () => (await waitingForSchemaLock()) === 1);
      b = holdSchemaLock(() => (secondHeld = true));
      await until("the second holder queues behind it", async () => (await waitingForSchemaLock()) === 2);
      a.release();
      await a.done;
      await until("the open went through and the second holder has the lock", () => secondHeld);
      await until("the second start's setup waits for the schema lock", async () => (await waitingForSchemaLock()) === 1, 30_000);

      // Not a member: the first instance hands it nothing, and it holds nothing it does not serve.
      const members = await db.execute<{ id: string }[]>("select instance_id as id from nerve_instances where grp = ? order by 1", [PARTITION_GROUP], "all");
      expect(members.map((m) => m.id)).toEqual(["first"]);
      expect(new Set((await partitionOwners(db)).values())).toEqual(new Set(["first"]));
      expect((await command(client, "users", "RegisterUser", "while-waiting", { email: "w@example.com", name: "W" })).body.ok).toBe(true);
    } finally {
      a.release();
      b?.release();
      await Promise.allSettled([a.done, b?.done]);
    }
    const second = await starting!;
    // Then it takes its share as usual.
    const placed = () => Array.from({ length: 64 }, (_, p) => p).filter((p) => placeOf(leaseName(PARTITION_GROUP, String(p)), ["first", "second"]) === "second");
    await until("the second instance holds its share", () => second.ownership.held().length === placed().length, 30_000);
    expect(second.ownership.held()).toEqual(placed());
  });
});
