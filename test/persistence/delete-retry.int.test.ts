/**
 * Deletes of published outbox rows that fail while PostgreSQL is away are retried with a growing pause
 * (200 ms doubling to 5 s), each failure an `error` event (logged by Nerve): a database away for minutes
 * was asked, and the failure logged, every 220 ms. Once it is back they are deleted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GroupCommitWriter, Repository, openDatabase, type Database } from "../../src/persistence/index.js";
import { postgresAvailable, profileWrite, proxiedPostgres, type TcpProxy, type TempPostgres } from "../support/index.js";

const available = await postgresAvailable();

describe.skipIf(!available)("deletes of published outbox rows while PostgreSQL is away", () => {
  let pg: TempPostgres;
  let proxy: TcpProxy;
  let db: Database;
  beforeAll(async () => {
    let url: string;
    ({ pg, proxy, url } = await proxiedPostgres());
    db = await openDatabase({ url });
  });
  afterAll(async () => {
    await db?.close();
    await proxy?.close();
    await pg?.drop();
  });

  it("are retried with a growing pause, not every 200 ms, and done once it is back", async () => {
    const writer = new GroupCommitWriter(db);
    const errors: number[] = [];
    writer.on("error", () => errors.push(Date.now()));
    for (let v = 1; v <= 3; v++) await writer.submit(profileWrite("del-1", v, `0190a0f1-0000-7000-8000-00000000000${v}`));
    const seqs = (await new Repository(db).pendingOutbox(10)).map((r) => Number(r.seq));
    expect(seqs).toHaveLength(3);

    await proxy.cut();
    writer.release(seqs);
    await new Promise((r) => setTimeout(r, 5000));
    // 200, 400, 800, 1,600 ms apart (and the attempts' own time): a handful in 5 s, where it was over 20.
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(errors.length).toBeLessThanOrEqual(6);

    await proxy.restore();
    await writer.released();
    expect(await new Repository(db).outboxSize()).toBe(0);
    await writer.close();
  }, 60_000);
});
