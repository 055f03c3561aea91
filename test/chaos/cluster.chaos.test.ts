/**
 * Chaos, opt-in (`npm run test:chaos`, never part of `npm test`): three Nerve processes on one fresh
 * PostgreSQL database and one nats-server, keyed client stories running throughout, and a fault every
 * 8–20 s on one instance at a time (CHAOS_MODE: `mixed` kill -9 / SIGSTOP+SIGCONT / SIGTERM, or
 * `freezekill`), for CHAOS_SECONDS (120). Then the faults stop, everything settles (bounded), and the run
 * checks CONTRACT.md §8's promises: every acknowledged command's events once in the log and once in their
 * stream, per-aggregate version order everywhere, every consumer at its streams' end, each consumer's inbox
 * in version order, and read models equal to a single fresh instance's replay of the streams. It prints the
 * time from each consumer lease taken to the consumer's first event applied, and writes a JSON result to
 * CHAOS_OUT when set. CHAOS_SEED replays the same fault schedule and story choices. CHAOS_NATS=r3 runs it on
 * a three-node NATS cluster with R3 streams instead, a third of the faults a kill -9 of one node (restarted
 * after 3–10 s), and the settle waits through the stream leader elections those cause.
 */
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import {
  PG_ADMIN_URL,
  assertConsistent,
  connectToCluster,
  postgresAvailable,
  registerUsers,
  retryingLoad,
  startFirstInstance,
  startInstance,
  startNatsCluster,
  startNatsServer,
  startServiceProcess,
  tearDownCluster,
  tempPostgres,
  until,
  type Instance,
  type NatsCluster,
  type NatsServerHandle,
  type TempPostgres,
} from "../support/index.js";
import { assertGrants, assertInboxOrder, assertLogAndStreams, assertReadModelsAsReplayed, consumersBehind, streamedCount, wholeLog } from "./checks.js";
import { runFaults, type Fault } from "./faults.js";
import { LogBook } from "./log-book.js";
import { chaosSettings, seeded } from "./settings.js";
import { CarefulClient, setUpCatalog, storyLoad } from "./stories.js";
import { measureNatsKills, measureStaleness, measureTakeovers, medianMax, splitAtStream, STALENESS_WINDOW_MS, takeoverTable } from "./takeovers.js";

// Asked for by name (npm run test:chaos): without PostgreSQL it fails, rather than pass having checked nothing.
if (!(await postgresAvailable())) throw new Error("the chaos run needs PostgreSQL at 127.0.0.1:5432 (user postgres): none answers");
const settings = chaosSettings();
// Only vitest.config.ts reads it; the service processes inherit this environment and warn about a NERVE_* variable they do not know.
delete process.env.NERVE_CHAOS;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r3 = settings.nats === "r3";
/** How long the end waits for the relay and the consumers to settle (longer on a cluster: a node's restart may leave elections behind). */
const SETTLE_MS = r3 ? 360_000 : 240_000;
/** How long the load runs on after the last fault. */
const TAIL_MS = 15_000;

/** Whether a database of `name` exists on the test server. */
async function databaseExists(name: string): Promise<boolean> {
  const admin = await openDatabase({ url: PG_ADMIN_URL, entities: [] });
  try {
    const row = await admin.execute<{ n: string | number }>("select count(*) as n from pg_database where datname = ?", [name], "get");
    return Number(row.n) > 0;
  } finally {
    await admin.close();
  }
}

describe(`chaos: three instances${r3 ? " on a 3-node NATS cluster (R3)" : ""}, ${settings.mode} faults for ${settings.seconds} s (seed ${settings.seed})`, () => {
  let nats: NatsServerHandle | undefined;
  let cluster: NatsCluster | undefined;
  let pg: TempPostgres | undefined;
  let db: Database | undefined;
  let nc: NatsConnection | undefined;
  let env: Record<string, string>;
  const instances = new Map<string, Instance>();
  const book = new LogBook(join(tmpdir(), `nerve-chaos-${settings.seed}-${Date.now()}`));
  const faultsStop = new AbortController();
  let faultsDone: Promise<Fault[]> | undefined;
  /** The client loads' stops, for afterAll when the test ended before it stopped them (a failure, a timeout). */
  const loadStops: (() => Promise<void>)[] = [];
  const started = Date.now();
  const result: Record<string, unknown> = { seed: settings.seed, mode: settings.mode, nats: settings.nats, seconds: settings.seconds, logs: book.dir, passed: false };
  const say = (line: string) => console.info(`[chaos +${Math.round((Date.now() - started) / 1000)} s] ${line}`);

  const restart = async (id: string): Promise<Instance> => {
    const ready = book.started(id);
    ready.catch(() => undefined); // awaited below; a failed spawn must not leave it unhandled
    const proc = await startServiceProcess({ env: { ...env, NERVE_INSTANCE_ID: id }, onLine: book.lineOf(id) });
    await ready.catch(async (err: unknown) => {
      await proc.kill9();
      throw err;
    });
    return { id, proc };
  };

  beforeAll(async () => {
    say(`seed ${settings.seed}, mode ${settings.mode}, ${settings.seconds} s of faults${r3 ? ", NATS: 3 nodes, R3 streams, node kills among the faults" : ""}; instance logs in ${book.dir}`);
    if (r3) cluster = await startNatsCluster(3);
    else nats = await startNatsServer();
    pg = await tempPostgres();
    env = { NATS_URL: cluster?.urls ?? nats!.url, NERVE_DB: pg.url, NERVE_HTTP_PORT: "0", LOG_LEVEL: "info", ...(r3 ? { NERVE_STREAM_REPLICAS: "3" } : {}) };
    const first = await startFirstInstance(env, "a", r3 ? 60_000 : undefined, book.lineOf("a"));
    instances.set("a", first.instance);
    db = first.db;
    for (const id of ["b", "c"]) instances.set(id, await startInstance(env, id, db, [...instances.keys(), id], book.lineOf(id)));
    nc = cluster
      ? await connectToCluster(cluster)
      : await connect({ servers: nats!.url, noAsyncTraces: true });
  }, 120_000);

  afterAll(async () => {
    faultsStop.abort();
    await Promise.race([Promise.all([faultsDone, ...loadStops.map((stop) => stop())]), sleep(60_000)]).catch(() => undefined);
    const dbName = pg?.url.slice(pg.url.lastIndexOf("/") + 1);
    try {
      await tearDownCluster(instances.values(), () => nc?.close(), () => db?.close(), () => pg?.drop(), () => nats?.stop(), () => cluster?.stop(), () => book.close());
    } finally {
      const running = [...instances.values()].filter((i) => !i.proc.exited).map((i) => i.id);
      const dropped = dbName === undefined || !(await databaseExists(dbName).catch(() => true));
      result.cleanup = { instancesRunning: running, database: dbName, dropped };
      result.durationMs = Date.now() - started;
      if (settings.out) writeFileSync(settings.out, `${JSON.stringify(result, null, 2)}\n`);
      say(`cleanup: ${running.length} instances running, database ${dbName} ${dropped ? "dropped" : "LEFT BEHIND"}, ${r3 ? "NATS cluster" : "nats-server"} stopped; ${Math.round((Date.now() - started) / 1000)} s in all${settings.out ? `; result in ${settings.out}` : ""}`);
    }
  }, 180_000);

  it("keeps every acknowledged command, in order, through the faults; every consumer catches up and builds what one instance would", async () => {
    const client = new CarefulClient(nc!);
    await setUpCatalog(client);
    expect(client.wrong, "setting up the catalog").toEqual([]);
    const users = Array.from({ length: 60 }, (_, i) => `chaos-${i}`);
    expect(await registerUsers(nc!, users)).toEqual([]);

    const stories = storyLoad(client, settings.seed, String(settings.seed), 12);
    const load = retryingLoad(nc!, users, 4, "chaos");
    loadStops.push(() => stories.stop(), () => load.stop());
    const faultsFrom = Date.now();
    const faults: Fault[] = [];
    faultsDone = runFaults({ mode: settings.mode, rng: seeded(settings.seed), instances, restart, say, natsNodes: cluster?.servers }, faultsStop.signal, faults);
    const progress = setInterval(() => say(`faults ${faults.length}, stories ${stories.stories}, acked ${client.acked.length} + ${load.acked.length} profile updates, retries ${client.retries + load.retries}, gave up ${client.gaveUp.length + load.gaveUp.length}, wrong ${client.wrong.length + load.wrong.length}, takes ${book.takes.filter((t) => t.at >= faultsFrom).length}`), 10_000);
    try {
      await sleep(settings.seconds * 1000);
      faultsStop.abort();
      await faultsDone;
      // The load goes on a little: the takeovers of the last fault have something to read, and are measured.
      say(`faults stopped after ${faults.length}; the load runs ${TAIL_MS / 1000} s more, then the stories in progress finish`);
      await sleep(TAIL_MS);
      await Promise.all([stories.stop(), load.stop()]);
    } finally {
      clearInterval(progress);
    }
    const loadEnded = Date.now();
    result.faults = faults;
    const commands = { acked: client.acked.length, profileUpdates: load.acked.length, stories: stories.stories, retries: client.retries + load.retries, failures: Object.fromEntries([...client.failures, ...load.failures]), gaveUp: [...client.gaveUp, ...load.gaveUp], wrong: [...client.wrong, ...load.wrong] };
    result.commands = commands;
    say(`load stopped: ${stories.stories} stories, ${client.acked.length} commands and ${load.acked.length} profile updates acknowledged, ${client.retries + load.retries} retries ${JSON.stringify(commands.failures)}`);

    // Settle: the relay has published the whole log, every durable consumer is at its streams' end, and the
    // process managers have nothing more to say (the log did not grow since the last look).
    let logged = -1;
    let streamed = 0;
    let behind: string[] = [];
    let durables = 0;
    let lastSaid = Date.now();
    /** On a cluster, the last JetStream API error of a look (a stream without a leader for a few seconds), and how many looks met one. */
    let apiError: string | undefined;
    let apiErrors = 0;
    await until("the log is published and every durable consumer is at its streams' end", async () => {
      const before = logged;
      try {
        logged = (await wholeLog(db!)).length;
        streamed = await streamedCount(nc!);
        ({ behind, durables } = await consumersBehind(nc!));
        apiError = undefined;
      } catch (err) {
        // Only on a cluster: an election's "jetstream is not enabled" or a timeout is a look to repeat.
        if (!r3) throw err;
        apiError = String(err);
        apiErrors++;
        logged = -1;
      }
      if (Date.now() - lastSaid >= 10_000) {
        lastSaid = Date.now();
        say(`settling: ${streamed} of ${logged} events published, ${behind.length} durables behind ${JSON.stringify(behind.slice(0, 4))}${apiError ? `; JetStream API: ${apiError.slice(0, 200)}` : ""}`);
      }
      return apiError === undefined && behind.length === 0 && streamed === logged && before === logged;
    }, SETTLE_MS, 500).catch((err: Error) => {
      throw new Error(`${err.message}: ${streamed} of ${logged} published; ${behind.join("; ")}${apiError ? `; last JetStream API error: ${apiError}` : ""} (seed ${settings.seed})`);
    });
    if (apiErrors > 0) say(`settling met ${apiErrors} JetStream API errors (stream leader elections), retried`);
    result.settleMs = Date.now() - loadEnded;
    say(`settled in ${result.settleMs} ms: ${durables} durables at their streams' end, ${logged} events logged`);
    expect(durables, "durable consumers found").toBeGreaterThan(10);

    const takeovers = await measureTakeovers(db!, book.takes, faults, faultsFrom);
    // A node's kill is not a take (the leases stay): each consumer measured from the kill, shown in the table apart from "all".
    const natsKills = r3 ? await measureNatsKills(db!, faults) : [];
    const applied = takeovers.flatMap((t) => (t.firstAppliedMs === undefined ? [] : [t.firstAppliedMs]));
    result.takeovers = { ...medianMax(applied), takes: takeovers.length, list: takeovers, logLines: Object.fromEntries(book.counts) };
    say(`consumer lease taken → first event applied (inbox), per take during the faults:\n${takeoverTable([...takeovers, ...natsKills])}`);
    if (r3) {
      result.natsKills = natsKills;
      const slow = natsKills.filter((k) => (k.firstAppliedMs ?? Infinity) > 10_000).map((k) => `${k.cause} ${k.consumer} ${k.firstAppliedMs ?? "none"} ms`);
      say(`NATS node kill → each consumer's first event applied after it (idle time included): ${slow.length} over 10 s${slow.length ? ` (${slow.join(", ")})` : ""}`);
      // What a reader of each read model saw: an event's occurrence to its application, over the minute after each kill.
      const staleness = await measureStaleness(db!, faults);
      await splitAtStream(nc!, staleness.filter((s) => (s.worstMs ?? 0) > 10_000)).catch((err: Error) => say(`the stream's times of the stalest events: not read (${err.message})`));
      result.natsKillStaleness = staleness;
      const worst = medianMax(staleness.flatMap((s) => (s.worstMs === undefined ? [] : [s.worstMs])));
      const stale = staleness.filter((s) => (s.worstMs ?? 0) > 10_000).map((s) => `${s.cause} ${s.consumer} ${s.worstMs} ms${s.beforeStreamMs === undefined ? "" : `, ${s.beforeStreamMs} ms of it before the stream had it`} (${s.worst?.subject})`);
      say(`NATS node kill → each consumer's worst event occurred → applied within ${STALENESS_WINDOW_MS / 1000} s after it (or until the next): median ${worst.median ?? "-"} ms, max ${worst.max ?? "-"} ms over ${worst.n}; ${stale.length} over 10 s${stale.length ? ` (${stale.join(", ")})` : ""}`);
    }
    result.warnings = book.noted.length;

    expect(faults.filter((f) => f.error), "faults whose restart failed").toEqual([]);
    expect(faults.filter((f) => f.exitCode !== undefined && f.exitCode !== 0), "SIGTERMs that did not end in an orderly exit").toEqual([]);
    expect(commands.gaveUp, "commands given up on").toEqual([]);
    expect(commands.wrong, "answers no retry can change").toEqual([]);
    const { logged: inLog, streamed: inStreams } = await assertLogAndStreams(nc!, db!, client.acked, (e) => !(e.aggregate_type === "User" && users.includes(e.aggregate_id)));
    await assertConsistent(nc!, db!, load.acked);
    const paidOrders = await assertGrants(db!, client.acked);
    const inboxed = await assertInboxOrder(db!);
    const rows = await assertReadModelsAsReplayed(nc!, db!);
    result.checks = { logged: inLog, streamed: inStreams, paidOrders, inboxRowsChecked: inboxed, readModelRowsCompared: rows };
    result.passed = true;
    say(`checks passed: ${inLog} events in the log, ${inStreams} in the streams, ${paidOrders} paid orders granted (or refunded and revoked) once, ${inboxed} inbox rows in order, ${rows} read-model rows = a single instance's replay`);
  }, settings.seconds * 1000 + TAIL_MS + SETTLE_MS + 300_000);
});
