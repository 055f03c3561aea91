/**
 * Forgetting projections' inbox rows (InboxPrune): the rows of events older than the horizon go, by the
 * time in their UUIDv7, a slice at a time; newer ones stay, and a process manager's stay whatever their
 * age. On a SQLite file (its slices deleted by the write worker, or on the main connection without one) and,
 * where it runs, PostgreSQL.
 */
import { afterEach, describe, expect, it } from "vitest";
import { v7 } from "uuid";
import { INBOX_PRUNE_SQL, InboxPrune, prunesInbox, type InboxPruneResult } from "../../src/consumers/index.js";
import type { ConsumerBatchWriter } from "../../src/persistence/index.js";
import { SqliteWriteWorker } from "../../src/persistence/sqlite-write-worker.js";
import { createSubscribers } from "../../src/projections/index.js";
import { postgresAvailable, tempPostgres } from "../support/index.js";
import { openReadModels, type ReadModels } from "../projections/fixtures.js";

const available = await postgresAvailable();
const DAY = 86_400_000;
const NOW = Date.parse("2026-03-20T12:00:00.000Z");
const HORIZON = 7 * DAY;
/** A UUIDv7 made `ago` ms before NOW (the uuid package's, with random bits: not the runtime's, whose ids only go up). */
const idAgo = (ago: number) => v7({ msecs: NOW - ago });

const PROJECTIONS = ["notifications", "security", "analytics", "certificates", "catalog", "search", "audit", "learner-progress"];
const PROCESS_MANAGERS = ["access-grants", "policy-sync"];

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** A read-model database, and the SQLite write worker beside it when asked for. */
interface Opened {
  m: ReadModels;
  writer?: ConsumerBatchWriter;
}

async function sqlite(): Promise<Opened> {
  const m = await openReadModels();
  cleanups.push(() => m.close());
  return { m };
}

async function sqliteWithWorker(): Promise<Opened> {
  const { m } = await sqlite();
  const worker = new SqliteWriteWorker(m.db, () => undefined);
  cleanups.push(() => worker.close());
  return { m, writer: worker };
}

async function postgres(): Promise<Opened> {
  const pg = await tempPostgres();
  cleanups.push(() => pg.drop());
  const m = await openReadModels({ url: pg.url });
  cleanups.push(() => m.close());
  return { m };
}

/** Old (past the horizon) and new inbox rows of `consumer`: 7 old ones, the oldest 90 days back, the youngest 1 ms past the horizon. */
async function fill(m: ReadModels, consumer: string): Promise<{ old: string[]; kept: string[] }> {
  const old = [90 * DAY, 30 * DAY, 8 * DAY, 7 * DAY + 3_600_000, 7 * DAY + 1000, 7 * DAY + 1, 7 * DAY + 1].map(idAgo);
  // The horizon's own millisecond is kept, as is everything younger (and an id of a clock ahead of NOW's).
  const kept = [HORIZON, 7 * DAY - 1, DAY, 0, -60_000].map(idAgo);
  for (const id of [...old, ...kept]) await m.db.execute("insert into consumer_inbox (consumer, event_id, handled_on) values (?, ?, ?)", [consumer, id, new Date(NOW).toISOString()], "run");
  return { old: old.sort(), kept: kept.sort() };
}

const rowsOf = async (m: ReadModels, consumer: string) =>
  (await m.db.execute<{ event_id: string }[]>("select event_id from consumer_inbox where consumer = ? order by event_id", [consumer], "all")).map((r) => r.event_id);

describe("which consumers lose inbox rows", () => {
  it("the eight projections, each declared right without its inbox; never the two process managers", () => {
    const subscribers = createSubscribers({ bus: {} as never, db: {} as never });
    expect(subscribers.filter(prunesInbox).map((s) => s.name).sort()).toEqual([...PROJECTIONS].sort());
    expect(subscribers.filter((s) => !prunesInbox(s)).map((s) => s.name).sort()).toEqual(PROCESS_MANAGERS);
    // A process manager is never pruned, even one that says it is idempotent.
    expect(prunesInbox({ name: "pm", handles: {}, react: async () => undefined, idempotentWithoutInbox: true })).toBe(false);
    // Nor a projection that has not said so.
    expect(prunesInbox({ name: "p", handles: {}, apply: async () => undefined })).toBe(false);
  });
});

describe.each([
  ["SQLite, the write worker deleting", sqliteWithWorker, false],
  ["SQLite, the main connection deleting", sqlite, false],
  ["PostgreSQL", postgres, !available],
] as const)("InboxPrune on %s", (_name, open, skip) => {
  it.skipIf(skip)("deletes projections' rows older than the horizon, a slice at a time; keeps newer ones, and every row of a process manager", async () => {
    const { m, writer } = await open();
    const rows = new Map<string, { old: string[]; kept: string[] }>();
    for (const c of [...PROJECTIONS, ...PROCESS_MANAGERS]) rows.set(c, await fill(m, c));
    // Slices of 3: two full ones and one short per projection (7 old rows), the cursor moving on past each.
    const prune = new InboxPrune({ db: m.db, writer, subscribers: createSubscribers(m.deps), horizonMs: HORIZON, slice: 3, pauseMs: 0 });
    expect(prune.consumers).toEqual(PROJECTIONS);

    const first = await prune.run(NOW);

    expect(first.deleted).toEqual(Object.fromEntries(PROJECTIONS.map((c) => [c, 7])));
    expect(first.slices).toBe(3 * PROJECTIONS.length);
    for (const c of PROJECTIONS) expect(await rowsOf(m, c), c).toEqual(rows.get(c)!.kept);
    for (const c of PROCESS_MANAGERS) expect(await rowsOf(m, c), c).toEqual([...rows.get(c)!.old, ...rows.get(c)!.kept].sort());
    // Nothing left to do.
    expect(await prune.run(NOW)).toMatchObject({ deleted: Object.fromEntries(PROJECTIONS.map((c) => [c, 0])), slices: 0 });
    // A day later the rows of 6 to 7 days back have aged past it too.
    expect((await prune.run(NOW + DAY)).deleted.catalog).toBe(2);
    expect(await rowsOf(m, "catalog")).toEqual(rows.get("catalog")!.kept.slice(2));
    expect(prune.stats.passes).toBe(3);
    expect(prune.stats.deleted.get("catalog")).toBe(9);
    expect(prune.stats.deleted.get("access-grants")).toBeUndefined();
  });

  it.skipIf(skip)("prunes only the consumers whose lease this instance holds", async () => {
    const { m, writer } = await open();
    for (const c of ["catalog", "search"]) await fill(m, c);
    const held = new Set(["catalog"]);
    const prune = new InboxPrune({ db: m.db, writer, subscribers: createSubscribers(m.deps), horizonMs: HORIZON, runsHere: (c) => held.has(c) });
    expect((await prune.run(NOW)).deleted).toEqual({ catalog: 7 });
    expect(await rowsOf(m, "search")).toHaveLength(12);
    // Its lease came here: from then on this instance prunes it.
    held.add("search");
    expect((await prune.run(NOW)).deleted).toEqual({ catalog: 0, search: 7 });
  });
});

describe.each([
  ["SQLite", sqlite, false],
  ["PostgreSQL", postgres, !available],
] as const)("the prune's statements on %s", (name, open, skip) => {
  it.skipIf(skip)("are served by the primary key (consumer, event_id): a range of it, no scan of the table, no sort", async () => {
    const { m } = await open();
    // Rows of several consumers, one a minute over 30 days, far more of them past the horizon than a slice
    // holds (as in service, where the planner then walks the key in order rather than sort what it finds),
    // and fresh statistics.
    const consumers = ["catalog", "catalog", "catalog", ...PROJECTIONS, ...PROCESS_MANAGERS];
    await m.db.connection.transactional(async (trx) => {
      for (let i = 0; i < 43_200; i += 480) {
        const params = Array.from({ length: 480 }, (_, k) => [consumers[(i + k) % consumers.length], idAgo((i + k) * 60_000), "x"]).flat();
        await m.db.execute(`insert into consumer_inbox (consumer, event_id, handled_on) values ${Array(480).fill("(?, ?, ?)").join(", ")}`, params, "run", trx);
      }
    });
    await m.db.execute("analyze", [], "run");
    const floor = idAgo(HORIZON);
    const plans = {
      sliceBounds: [INBOX_PRUNE_SQL.sliceBounds, ["catalog", "", floor, 500]],
      // A slice's range: from where the last one ended to the last id of 500.
      deleteRange: [INBOX_PRUNE_SQL.deleteRange, ["catalog", idAgo(HORIZON + 10 * DAY), idAgo(HORIZON + 9 * DAY)]],
    } as const;
    for (const [which, [sql, params]] of Object.entries(plans)) {
      if (name === "SQLite") {
        const steps = (await m.db.execute<{ detail: string }[]>(`explain query plan ${sql}`, [...params], "all")).map((r) => r.detail);
        const onInbox = steps.filter((d) => /consumer_inbox/.test(d));
        expect(onInbox.length, which).toBeGreaterThan(0);
        for (const d of onInbox) expect(d, which).toMatch(/^SEARCH consumer_inbox USING (COVERING )?INDEX sqlite_autoindex_consumer_inbox_1 \(consumer=\? AND event_id[<>=]/);
        expect(steps.join("\n"), which).not.toMatch(/SCAN consumer_inbox|TEMP B-TREE/);
      } else {
        const plan = (await m.db.execute<Record<string, string>[]>(`explain ${sql}`, [...params], "all")).map((r) => r["QUERY PLAN"]).join("\n");
        expect(plan, which).toMatch(/(Index (Only )?Scan using|Bitmap Index Scan on) consumer_inbox_pkey/);
        expect(plan, which).toMatch(/Index Cond: \(\(\(?consumer\)?(::text)? = /);
        expect(plan, which).not.toMatch(/Seq Scan|Sort/);
      }
    }
  });
});

describe("InboxPrune with the SQLite write worker", () => {
  it("sends each slice to the worker as one batch, and a stop ends the pass after its slice", async () => {
    const { m } = await sqlite();
    const worker = new SqliteWriteWorker(m.db, () => undefined);
    cleanups.push(() => worker.close());
    for (const c of ["catalog", "search"]) await fill(m, c);
    let batches = 0;
    let prune: InboxPrune | undefined;
    const writer: ConsumerBatchWriter = {
      applyConsumerBatch: (batch) => {
        // Stopped during the second slice: that slice ends, and nothing after it runs.
        if (++batches === 2) void prune!.stop();
        return worker.applyConsumerBatch(batch);
      },
    };
    prune = new InboxPrune({ db: m.db, writer, subscribers: [m.subscriber("catalog"), m.subscriber("search")], horizonMs: HORIZON, slice: 2, pauseMs: 0 });
    const r: InboxPruneResult = await prune.run(NOW);
    expect(r).toMatchObject({ deleted: { catalog: 4 }, slices: 2 });
    expect(batches).toBe(2);
    expect(await rowsOf(m, "catalog")).toHaveLength(12 - 4);
    expect(await rowsOf(m, "search")).toHaveLength(12);
    expect(await prune.run(NOW)).toMatchObject({ deleted: {}, slices: 0 });
  });
});
