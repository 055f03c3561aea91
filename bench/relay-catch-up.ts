/**
 * `npm run bench:relay-catch-up [-- ROWS [AGGREGATES [STORED]]]`: how fast the outbox relay publishes a
 * backlog after a start — the case where it looks aggregates up in the stream first (each aggregate the first
 * time it comes since the start, and again while its rows are found stored). A private nats-server whose
 * EVENTS_USERS already holds STORED messages of as many other aggregates (default 100,000: the lookups of
 * absent aggregates search the stream's subjects), a SQLite outbox of ROWS rows (default 50,000) of
 * AGGREGATES aggregates (default ROWS: one row each, the most lookups), then the time from the relay's
 * start until the outbox is empty, against the same rows published by a bare publisher with the same
 * window (the raw baseline of this run). In-process; writes nothing to bench/results.
 */
import { nanos, headers as natsHeaders } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { OutboxRelay } from "../src/outbox/index.js";
import { GroupCommitWriter, Repository, openDatabase } from "../src/persistence/index.js";
import { createLogger } from "../src/log/index.js";
import { startNatsServer } from "../test/support/nats-server.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { profileWrite } from "../test/support/writes.js";

const [ROWS = 50_000, AGGREGATES = ROWS, STORED = 100_000] = process.argv.slice(2).map(Number);
const WINDOW = 256;

let eventNo = 0;
const eventId = (): string => `0190a0f0-0000-7000-8000-${String(++eventNo).padStart(12, "0")}`;

/** Publishes `n` messages of `n` aggregates (`s<i>`) with a window of acks in flight; resolves with the seconds it took. */
async function publishAll(js: ReturnType<typeof jetstream>, subjects: string[], bodies: Uint8Array[], ids: string[]): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < subjects.length) {
      const i = next++;
      const h = natsHeaders();
      h.set("Nats-Msg-Id", ids[i]!);
      await js.publish(subjects[i]!, bodies[i]!, { headers: h });
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, lane));
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const nats = await startNatsServer();
  const sqlite = await tempSqlitePath();
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  const db = await openDatabase({ url: `sqlite:${sqlite.path}` });
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await jsm.streams.add({ name: "EVENTS_USERS", subjects: ["events.users.>"], duplicate_window: nanos(120_000) });
    process.stderr.write(`storing ${STORED} messages of other aggregates…\n`);
    const pre = Array.from({ length: STORED }, (_, i) => i);
    await publishAll(js, pre.map((i) => `events.users.UserProfileUpdated.old${i}`), pre.map(() => new Uint8Array([0x80])), pre.map(() => eventId()));

    const writer = new GroupCommitWriter(db);
    process.stderr.write(`writing ${ROWS} outbox rows of ${AGGREGATES} aggregates…\n`);
    const versions = new Map<number, number>();
    for (let i = 0; i < ROWS; i += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, ROWS - i) }, (_, k) => {
          const a = (i + k) % AGGREGATES;
          const v = (versions.get(a) ?? 0) + 1;
          versions.set(a, v);
          return writer.submit(profileWrite(`new${a}`, v, eventId()));
        }),
      );
    }
    await writer.flushed();
    const repo = new Repository(db);
    const rows = await repo.pendingOutbox(ROWS + 1);

    // The baseline: the same rows' bodies published bare, to subjects of their own (another stream's worth of work).
    await jsm.streams.add({ name: "BASELINE", subjects: ["baseline.>"], duplicate_window: nanos(120_000) });
    const raw = await publishAll(js, rows.map((r) => `baseline.${r.aggregate_id}`), rows.map((r) => r.body), rows.map((r) => `b-${r.event_id}`));

    const relay = new OutboxRelay({ repo, js, jsm, logger: createLogger("silent"), window: WINDOW, deleter: writer });
    writer.on("committed", (r) => relay.offer(r));
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    relay.start();
    if (!(await relay.flush(30 * 60_000))) throw new Error("the relay did not empty the outbox in 30 minutes");
    const s = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    await relay.stop();
    await writer.flushed();
    console.log(
      `${ROWS} rows of ${AGGREGATES} aggregates over a stream of ${STORED} others: relay ${s.toFixed(2)} s (${Math.round(ROWS / s)} rows/s, ` +
        `${((cpu.user + cpu.system) / ROWS).toFixed(1)} µs CPU/row in this process); bare publish ${raw.toFixed(2)} s (${Math.round(ROWS / raw)}/s); ` +
        `relay ÷ bare ${(s / raw).toFixed(2)}; stats ${JSON.stringify(relay.stats)}`,
    );
  } finally {
    await nc.close();
    await db.close();
    await nats.stop();
    await sqlite.cleanup();
  }
}

await main();
