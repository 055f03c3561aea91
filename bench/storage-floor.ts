/**
 * The storage floor of a durable command: what Nerve's own SQLite path costs when nothing else runs —
 * no NATS, no actor, no decide, no reply. The write worker Nerve uses (SqliteWriteWorker, its prepared
 * multi-row statements, WAL, synchronous FULL, a fresh file with Nerve's schema) commits group commits
 * of `batch` UpdateUserProfile-shaped writes (a snapshot upsert guarded by its version, one event row,
 * one outbox row) and, riding along as the relay's acks do, deletes the outbox rows of the batch before.
 * `groups` commits stay in flight, as the group-commit writer keeps its next batch queued behind the one
 * running. CPU is the process's, every thread (main, the write thread, libuv's pool running SQLite, V8's
 * helpers), per command. With `where: "inline"` the same engine runs on the main thread
 * (`NERVE_SQLITE_WRITER=inline`): the difference is what the hop to the write thread costs.
 */
import { cpuUsage } from "node:process";
import { openDatabase } from "../src/persistence/index.js";
import { SqliteWriteWorker } from "../src/persistence/sqlite-write-worker.js";
import type { AggregateWrite } from "../src/persistence/commit-batch.js";
import { encodeMsgPack } from "../contracts/index.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { threadCpuByName, threadCpuSpent } from "./thread-cpu.js";

/** One batch size's figures. */
export interface StorageFloor {
  batch: number;
  /** Where the write engine ran: its thread (Nerve's default) or the main thread. */
  where: "thread" | "inline";
  commands: number;
  perSecond: number;
  /** The process's CPU (all threads) per command, µs. */
  cpuUsPerCommand: number;
  /** Wall time per group commit, ms. */
  commitMs: number;
  /** CPU per command by thread name (Linux /proc), µs. */
  threads: Record<string, number>;
}

function userWrite(id: string, version: number, now: string, seq: number): AggregateWrite {
  const eventId = `0193a1b2-c3d4-7e5f-8a9b-${seq.toString(16).padStart(12, "0")}`;
  const payload = { user_id: id, profile_data: { bio: `durable #${seq}` } };
  const envelope = { event_id: eventId, event_type: "UserProfileUpdated", event_version: 1, occurred_on: now, aggregate_id: id, aggregate_version: version, correlation_id: eventId, causation_id: null, payload };
  return {
    aggregateType: "User",
    aggregateId: id,
    baseVersion: version - 1,
    version,
    state: { user_id: id, email: `${id}@example.com`, name: `Learner ${id}`, profile_data: { bio: `durable #${seq}` }, status: "active", registered_on: now },
    now,
    events: [{ event_id: eventId, event_type: "UserProfileUpdated", event_version: 1, occurred_on: now, aggregate_version: version, correlation_id: eventId, causation_id: null, payload, subject: `events.users.UserProfileUpdated.${id}`, body: encodeMsgPack(envelope) }],
  };
}

/** Commits `commands` writes in group commits of `batch` over `users` aggregates; `groups` commits in flight. */
export async function measureStorageFloor(opts: { batch: number; commands: number; users?: number; groups?: number; where?: "thread" | "inline" }): Promise<StorageFloor> {
  const users = opts.users ?? 2000;
  const groups = opts.groups ?? 2;
  const where = opts.where ?? "thread";
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}`, sqliteSynchronous: "FULL" });
  const worker = new SqliteWriteWorker(db, () => undefined, undefined, where);
  try {
    const versions = new Array<number>(users).fill(0);
    let seq = 0;
    let next = 0;
    // Each aggregate's first write registers it (base 0); the timed part updates registered ones only.
    const batchOf = (size: number) => {
      const now = new Date().toISOString();
      const writes: AggregateWrite[] = [];
      for (let i = 0; i < size; i++) {
        const u = next++ % users;
        writes.push(userWrite(`sf-u${u}`, ++versions[u]!, now, seq++));
      }
      return writes;
    };
    let published: number[] = [];
    const commitOne = async (size: number) => {
      const rows = await worker.commit(batchOf(size), published.splice(0));
      for (const r of rows) published.push(r.seq);
    };
    for (let done = 0; done < users; done += 200) await commitOne(Math.min(200, users - done));
    // A warm-up at the measured size, then the measured commits.
    for (let i = 0; i < 50; i++) await commitOne(opts.batch);
    const rounds = Math.ceil(opts.commands / opts.batch);
    const threads0 = threadCpuByName();
    const cpu0 = cpuUsage();
    const t0 = performance.now();
    let started = 0;
    const lane = async () => {
      while (started < rounds) {
        started++;
        await commitOne(opts.batch);
      }
    };
    await Promise.all(Array.from({ length: groups }, lane));
    const ms = performance.now() - t0;
    const cpu = cpuUsage(cpu0);
    const commands = rounds * opts.batch;
    const threads = Object.fromEntries([...threadCpuSpent(threads0, threadCpuByName())].filter(([, ms]) => ms > 0).map(([name, ms]) => [name, Math.round((ms * 1000) / commands)]));
    return { batch: opts.batch, where, commands, perSecond: Math.round((commands / ms) * 1000), cpuUsPerCommand: Math.round(((cpu.user + cpu.system) / commands) * 10) / 10, commitMs: Math.round((ms / rounds) * 1000) / 1000, threads };
  } finally {
    await worker.close();
    await db.close();
    await tmp.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const batch of (process.argv[2] ?? "4,11,32,64,128,256").split(",").map(Number)) console.log(JSON.stringify(await measureStorageFloor({ batch, commands: 30_000 })));
}
