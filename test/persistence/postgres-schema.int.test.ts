/**
 * Schema changes at start on a real PostgreSQL: instances starting together on an empty database take
 * turns (one failed with `relation … already exists`), and an ALTER that would wait behind a long query
 * gives up after its lock_timeout instead of holding every later statement on the table behind it.
 */
import { EntitySchema } from "@mikro-orm/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clusterEntities } from "../../src/cluster/index.js";
import { consumerEntities } from "../../src/consumers/index.js";
import { readModelEntities } from "../../src/projections/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, tempPostgres, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();
const everything = [...consumerEntities, ...readModelEntities, ...clusterEntities];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A table of the test's own, in two versions: the second adds a column (an ALTER TABLE at start). */
const probe = (withNote: boolean): EntitySchema<any> =>
  new EntitySchema<any>({
    name: "SchemaProbe",
    tableName: "schema_probe",
    properties: { id: { type: "integer", primary: true, autoincrement: false }, ...(withNote ? { note: { type: "string", nullable: true } } : {}) },
  });

describe.skipIf(!available)("schema changes at start on PostgreSQL", () => {
  let pg: TempPostgres;
  const dbs: Database[] = [];
  beforeEach(async () => {
    pg = await tempPostgres();
  });
  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.close().catch(() => undefined);
    await pg.drop();
  });

  it("two instances opening one empty database at once both start, with the whole schema", async () => {
    const opened = await Promise.all([openDatabase({ url: pg.url, entities: everything }), openDatabase({ url: pg.url, entities: everything })]);
    dbs.push(...opened);
    const tables = async (db: Database) => (await db.execute<{ t: string }[]>("select table_name as t from information_schema.tables where table_schema = current_schema() order by 1", [], "all")).map((r) => r.t);
    const [a, b] = await Promise.all(opened.map(tables));
    expect(a).toEqual(b);
    for (const t of ["nerve_events", "nerve_outbox", "nerve_leases", "consumer_inbox", "search_documents"]) expect(a).toContain(t);
    // A third start finds nothing to change.
    dbs.push(await openDatabase({ url: pg.url, entities: everything }));
  });

  it("an ALTER at start gives up after its lock_timeout behind a long query, rather than queue every statement behind it", { timeout: 45_000 }, async () => {
    const running = await openDatabase({ url: pg.url, entities: [probe(false)] });
    dbs.push(running);
    await running.execute("insert into schema_probe (id) values (?)", [1], "run");
    // A long read of the table by a running instance: it holds the table's ACCESS SHARE lock for 20 s.
    const longRead = running.execute("select count(*) as n, pg_sleep(?) as slept from schema_probe", [20], "get").catch((err: Error) => err);
    const reading = async () => Number((await running.execute<{ n: string }>("select count(*) as n from pg_stat_activity where datname = current_database() and query like ? and state = ?", ["%pg_sleep%schema_probe%", "active"], "get")).n);
    while ((await reading()) === 0) await sleep(20);
    try {
      const refused = await openDatabase({ url: pg.url, entities: [probe(true)] }).then(
        (db) => (dbs.push(db), undefined),
        (err: Error) => err,
      );
      expect(refused?.message).toMatch(/gave up waiting for a table's lock/);
      expect(refused?.cause).toMatchObject({ code: "55P03" });
      // Nothing of it was left half-done: the column is not there.
      const columns = await running.execute<{ c: string }[]>("select column_name as c from information_schema.columns where table_name = ?", ["schema_probe"], "all");
      expect(columns.map((r) => r.c)).toEqual(["id"]);
    } finally {
      await running.execute("select pg_cancel_backend(pid) from pg_stat_activity where datname = current_database() and query like ? and pid <> pg_backend_pid()", ["%pg_sleep%schema_probe%"], "all");
      await longRead;
    }
    // Once the read is over, the start goes through.
    const later = await openDatabase({ url: pg.url, entities: [probe(true)] });
    dbs.push(later);
    await later.execute("insert into schema_probe (id, note) values (?, ?)", [2, "added"], "run");
  });
});
