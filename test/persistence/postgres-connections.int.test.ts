/**
 * How Nerve's PostgreSQL connections connect and wait, on a real server: the main pool has the size it
 * is given (NERVE_PG_POOL) and a statement that finds it full fails soon (transient) instead of waiting
 * 60 s; a start against a server that never answers fails instead of hanging; every connection keeps TCP alive.
 */
import { createServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { isTransientFailure } from "../../src/consumers/transient.js";
import { postgresAvailable, tempPostgres, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

/** What openDatabase or a statement threw. */
async function failure(work: Promise<unknown>): Promise<Error> {
  try {
    await work;
  } catch (err) {
    return err as Error;
  }
  throw new Error("it did not fail");
}

describe.skipIf(!available)("PostgreSQL connections", () => {
  let pg: TempPostgres;
  let admin: Database;
  beforeAll(async () => {
    pg = await tempPostgres();
    admin = await openDatabase({ url: pg.url, entities: [] });
  });
  afterAll(async () => {
    await admin?.close();
    await pg?.drop();
  });

  const sleepers = async () =>
    Number((await admin.execute<{ n: string }>("select count(*) as n from pg_stat_activity where datname = current_database() and query like ? and state = ?", ["select pg_sleep(%", "active"], "get")).n);

  it("a main pool of pgPool connections: a statement that finds them all busy fails soon, as a transient failure", async () => {
    const db = await openDatabase({ url: pg.url, entities: [], pgPool: 2 });
    const cancel = () => admin.execute("select pg_cancel_backend(pid) from pg_stat_activity where datname = current_database() and query like ? and pid <> pg_backend_pid()", ["select pg_sleep(%"], "all");
    try {
      const busy = [db.execute("select pg_sleep(?)", [60], "get"), db.execute("select pg_sleep(?)", [60], "get")].map((p) => p.catch((err: Error) => err));
      await until("both connections sleep", async () => (await sleepers()) === 2);
      const err = await failure(db.execute("select 1 as one", [], "get"));
      expect(err.message).toMatch(/Timeout acquiring a connection/);
      expect(isTransientFailure(err)).toBe(true);
      await cancel();
      for (const r of await Promise.all(busy)) expect((r as { code?: string }).code).toBe("57014");
      // Its connections serve again once free.
      expect(await db.execute("select 1 as one", [], "get")).toEqual({ one: 1 });
    } finally {
      await cancel();
      await db.close();
    }
  });

  it("every connection keeps TCP alive", async () => {
    const knex = admin.connection.getKnex();
    const client = (await knex.client.acquireConnection()) as { connectionParameters: { keepalives: number; keepalives_idle: number } };
    try {
      expect(client.connectionParameters.keepalives).toBe(1);
      expect(client.connectionParameters.keepalives_idle).toBeGreaterThan(0);
    } finally {
      await knex.client.releaseConnection(client);
    }
  });

  it("a start against a server that accepts and never answers fails, transiently, instead of hanging", { timeout: 30_000 }, async () => {
    const sockets: Socket[] = [];
    const silent = createServer((s) => void sockets.push(s));
    await new Promise<void>((ok) => silent.listen(0, "127.0.0.1", ok));
    try {
      const { port } = silent.address() as AddressInfo;
      const err = await failure(openDatabase({ url: `postgres://postgres@127.0.0.1:${port}/nowhere`, entities: [] }));
      expect(isTransientFailure(err)).toBe(true);
      expect(sockets.length).toBeGreaterThan(0);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((ok) => silent.close(ok));
    }
  });
});
