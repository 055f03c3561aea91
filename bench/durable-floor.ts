/**
 * The durable floor's store (section 1d): what the floor (floor.ts) must add to answer a command the way the
 * contract asks — the request decoded and checked against its schema, the aggregate's next state and its
 * event made, both committed with the event's outbox row before the reply (CONTRACT.md §3: a reply only
 * after the events are durably stored), the event published from that row, the row deleted once JetStream
 * has it. Nothing else: no actor, mailbox, command bus, relay, idempotency, tracing, metrics or cluster
 * fences. It commits through Nerve's own write worker (src/persistence/sqlite-write-worker.ts: better-sqlite3
 * on a thread of its own, its statements prepared once, synchronous FULL, the deletes riding along) with
 * group commits as Nerve makes them (what arrived in one turn of the event loop, two commits at most in
 * flight), so the gap between this floor and Nerve is the runtime's own. With `on: "main"` the same
 * statements run on the main thread instead (better-sqlite3, synchronously: the event loop waits out each
 * commit's fsync), the design Nerve left for the worker: no hop between threads, nothing in parallel.
 *
 * With `contract`, the main-thread store also does what CONTRACT.md asks of every command beyond that, each
 * the least way (Nerve's own readers of the contract's rules where it has them): the request's headers read
 * and checked (its Content-Type, Idempotency-Key, Correlation-Id, Causation-Id and trace context — §3), a
 * fresh UUIDv7 command id that defaults the event's correlation and causation ids, a new trace when the
 * request carries none (§2: every event message carries the `traceparent` of its command's trace), stored
 * with the outbox row so the event's headers survive a restart, `aggregate_type` in the envelope, the body
 * decoded and the reply encoded in the request's encoding, and the reply's `Nerve-Instance` header (§8).
 * The caller serves it through the NATS service API (§3), not a bare subscription. Still no actor, mailbox,
 * command bus, relay, idempotency store (the bench sends no key), tracing spans, metrics or fences.
 */
import type { Msg } from "@nats-io/nats-core";
import type { ServiceMsg } from "@nats-io/services";
import { CommandDefinitions, ContentTypes, decode, decodeMsgPack, encode, encodeMsgPack, type ContentType, type NerveError } from "../contracts/index.js";
import { okHeaders, requestContentType, requestHeaderReader, requestHeaders, type RequestHeaders } from "../src/api/wire.js";
import { rootTraceparent } from "../src/tracing/index.js";
import { openDatabase, type Database } from "../src/persistence/index.js";
import { SqliteWriteWorker } from "../src/persistence/sqlite-write-worker.js";
import { encodeWrites, type AggregateWrite } from "../src/persistence/commit-batch.js";
import { writeStatements } from "../src/persistence/batch-statements.js";
import { openSqlite, preparedStatements, statementExec, writerPragmas } from "../src/persistence/sqlite-lock.js";
import { uuidv7 } from "../src/runtime/uuid7.js";
import { tempSqlitePath } from "../test/support/tmp.js";

/** An event committed with its outbox row, to be published; `published` once JetStream has it. */
export interface Committed {
  subject: string;
  msgID: string;
  body: Uint8Array;
  /** The command's trace (the events of the durable floor + contract carry it). */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
  published: () => void;
}

/** Takes commands, commits them, answers them and hands their events on. */
export interface DurableStore {
  /** Takes one UpdateUserProfile request for `id` (a service API message with `contract`); answers it once its group commit has committed. */
  take(msg: Msg, id: string): void;
  /** Group commits and the writes in them. */
  readonly stats: { commits: number; writes: number; rejected: number };
  close(): Promise<void>;
}

interface UserState {
  user_id: string;
  email: string;
  name: string;
  profile_data: Record<string, unknown>;
  status: string;
  registered_on: string;
}

const MAX_IN_FLIGHT = 2;
const body = CommandDefinitions.UpdateUserProfile.body;

/**
 * Opens a fresh SQLite file with Nerve's schema, registers `ids` in it (not timed: base version 0), and
 * returns the store; each committed event goes to `publish`, on the subject `subjectOf` gives its aggregate.
 */
export async function startDurableStore(ids: string[], subjectOf: (id: string) => string, publish: (e: Committed) => void, on: "worker" | "main" = "worker", contract?: { instance: string }): Promise<DurableStore> {
  const tmp = await tempSqlitePath();
  let db: Database | undefined;
  let w: Committer | undefined;
  try {
    db = await openDatabase({ url: `sqlite:${tmp.path}`, sqliteSynchronous: "FULL" });
    w = on === "worker" ? new SqliteWriteWorker(db, () => undefined) : mainThreadCommitter(tmp.path);
  } catch (err) {
    await db?.close();
    await tmp.cleanup();
    throw err;
  }
  const states = new Map<string, { version: number; state: UserState }>();
  const now = new Date().toISOString();
  for (let i = 0; i < ids.length; i += 200) {
    const writes: AggregateWrite[] = ids.slice(i, i + 200).map((id) => {
      const state: UserState = { user_id: id, email: `${id}@bench.example`, name: `Bench user ${id}`, profile_data: {}, status: "active", registered_on: now };
      states.set(id, { version: 1, state });
      return { aggregateType: "User", aggregateId: id, baseVersion: 0, version: 1, state, now, events: [] };
    });
    await w.commit(writes);
  }
  const commit = w.commit.bind(w);

  const stats = { commits: 0, writes: 0, rejected: 0 };
  let pending: { msg: Msg; write: AggregateWrite; reply: Uint8Array; ct: ContentType }[] = [];
  let acked: number[] = [];
  let inFlight = 0;
  let scheduled = false;

  const flush = (): void => {
    scheduled = false;
    if (inFlight >= MAX_IN_FLIGHT || pending.length === 0) return;
    const batch = pending;
    pending = [];
    inFlight++;
    stats.commits++;
    stats.writes += batch.length;
    commit(
      batch.map((b) => b.write),
      acked.splice(0),
    ).then(
      (rows) => {
        // One outbox row per write, in the batch's order.
        for (const [i, b] of batch.entries()) {
          if (contract) b.msg.respond(b.reply, { headers: okHeaders(b.ct, contract.instance) });
          else b.msg.respond(b.reply);
          const e = b.write.events[0]!;
          const seq = rows[i]!.seq;
          publish({ subject: e.subject, msgID: e.event_id, body: e.body, traceparent: b.write.traceparent, tracestate: b.write.tracestate, published: () => acked.push(seq) });
        }
      },
      (err: unknown) => {
        for (const b of batch) b.msg.respond(encodeMsgPack({ ok: false, error: { code: "internal", message: String(err) } }));
      },
    ).finally(() => {
      inFlight--;
      schedule();
    });
  };
  const schedule = (): void => {
    if (scheduled || pending.length === 0) return;
    scheduled = true;
    setImmediate(flush);
  };

  return {
    stats,
    take(msg, id) {
      // The contract's headers (a client's mistake in them is invalid_request, answered in JSON).
      let ct: ContentType = ContentTypes.MsgPack;
      let h: RequestHeaders = {};
      if (contract) {
        try {
          const reader = requestHeaderReader(msg as ServiceMsg);
          ct = requestContentType(msg as ServiceMsg, reader);
          h = requestHeaders(msg as ServiceMsg, reader);
        } catch (err) {
          stats.rejected++;
          msg.respond(encode(ContentTypes.Json, { ok: false, error: { code: "invalid_request", message: (err as NerveError).message } }));
          return;
        }
      }
      const decoded = contract ? decode(ct, msg.data) : decodeMsgPack(msg.data);
      const parsed = decoded.ok ? body.safeParse(decoded.value) : undefined;
      const current = states.get(id);
      if (!parsed?.success || !current) {
        stats.rejected++;
        msg.respond(encode(ct, { ok: false, error: { code: current ? "invalid_request" : "not_found", message: "rejected" } }));
        return;
      }
      // decide and evolve: the new profile, version + 1, one UserProfileUpdated.
      const at = Date.now();
      const occurred = new Date(at).toISOString();
      const version = current.version + 1;
      const state: UserState = { ...current.state, profile_data: { ...current.state.profile_data, ...parsed.data.profile_data } };
      states.set(id, { version, state });
      const eventId = uuidv7(at);
      // The contract's causal chain: a command id of its own, the defaults of both ids; the floor without it uses the event's id and no cause.
      const commandId = contract ? uuidv7(at) : eventId;
      const correlationId = h.correlationId ?? commandId;
      const causationId = contract ? (h.causationId ?? commandId) : null;
      const payload = { user_id: id, profile_data: parsed.data.profile_data };
      const envelope = contract
        ? { event_id: eventId, event_type: "UserProfileUpdated", event_version: 1, occurred_on: occurred, aggregate_type: "User", aggregate_id: id, aggregate_version: version, correlation_id: correlationId, causation_id: causationId, payload }
        : { event_id: eventId, event_type: "UserProfileUpdated", event_version: 1, occurred_on: occurred, aggregate_id: id, aggregate_version: version, correlation_id: correlationId, causation_id: causationId, payload };
      const write: AggregateWrite = {
        aggregateType: "User",
        aggregateId: id,
        baseVersion: version - 1,
        version,
        state,
        now: occurred,
        events: [{ event_id: eventId, event_type: "UserProfileUpdated", event_version: 1, occurred_on: occurred, aggregate_version: version, correlation_id: correlationId, causation_id: causationId, payload, subject: subjectOf(id), body: encodeMsgPack(envelope) }],
        ...(contract ? { traceparent: h.traceparent ?? rootTraceparent(), tracestate: h.tracestate } : {}),
      };
      const reply = encode(ct, { ok: true, aggregate_id: id, aggregate_version: version, events: [{ event_id: eventId, event_type: "UserProfileUpdated" }] });
      pending.push({ msg, write, reply, ct });
      schedule();
    },
    async close() {
      await w!.close().catch(() => undefined);
      await db!.close().catch(() => undefined);
      await tmp.cleanup();
    },
  };
}

/** What commits a group commit: the write worker, or {@link mainThreadCommitter}. */
interface Committer {
  commit(writes: AggregateWrite[], published?: readonly number[]): Promise<{ seq: number }[]>;
  close(): Promise<void>;
}

/** The write worker's statements (batch-statements.ts) on a connection of the main thread, each commit synchronous. */
function mainThreadCommitter(path: string): Committer {
  const handle = openSqlite(path, 5000);
  for (const pragma of writerPragmas("FULL", 5000)) handle.exec(pragma);
  const exec = statementExec(preparedStatements(handle, 256));
  return {
    async commit(writes, published = []) {
      handle.exec("begin immediate");
      try {
        const seqs = await writeStatements(exec, encodeWrites(writes), published);
        handle.exec("commit");
        return seqs.map((seq) => ({ seq }));
      } catch (err) {
        handle.exec("rollback");
        throw err;
      }
    },
    async close() {
      handle.close();
    },
  };
}
