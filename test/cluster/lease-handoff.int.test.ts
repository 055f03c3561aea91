/**
 * A hand-off whose drain never ends (a flush waiting on something that does not come) gives the lease up
 * after drainTimeoutMs, to lapse for its next holder — before, it was renewed for good and served by nobody.
 * Real PostgreSQL.
 */
import { afterEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { Leases, clusterEntities } from "../../src/cluster/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, tempPostgres, until, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();
const quiet = pino({ level: "silent" });
const KEYS = Array.from({ length: 8 }, (_, i) => `k${i}`);

describe.skipIf(!available)("a lease hand-off whose drain never ends", () => {
  let pg: TempPostgres | undefined;
  const dbs: Database[] = [];
  const managers: Leases[] = [];
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.stop().catch(() => undefined);
    for (const db of dbs.splice(0)) await db.close().catch(() => undefined);
    await pg?.drop();
  });

  it("is given up after drainTimeoutMs and lapses for the member it belongs to (was: renewed for good, served by nobody)", async () => {
    pg = await tempPostgres();
    const manager = async (instanceId: string, drain?: () => Promise<void>) => {
      const db = await openDatabase({ url: pg!.url, entities: clusterEntities });
      dbs.push(db);
      const m = new Leases({ db, instanceId, logger: quiet, group: "handoff", keys: KEYS, ttlMs: 1200, renewEveryMs: 200, drain, drainTimeoutMs: 500 });
      managers.push(m);
      await m.start();
      return m;
    };
    const stuck = await manager("stuck", () => new Promise<void>(() => undefined));
    expect(stuck.held()).toHaveLength(KEYS.length);
    const next = await manager("next");
    await until("the keys that belong to the new member are its", () => next.held().length > 0 && stuck.held().length + next.held().length === KEYS.length, 15_000);
    expect(stuck.stats.lost).toBe(next.held().length);
    expect(stuck.stats.released).toBe(0);
  });
});
