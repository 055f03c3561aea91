/**
 * Which failures of an event's handling are the surroundings' and pass by themselves (a command's owner
 * overloaded or being handed over, the database locked, restarting or out of reach) rather than the
 * event's own. A consumer retries those for as long as they last, in place and in order; only the
 * others count towards the dead letters (runner.ts): an event must not be parked because its consumer
 * ran during an outage. A fenced write counts too: the instance lost the consumer's lease, its runner
 * is being stopped, and the event is its next holder's to apply.
 */
import { isNerveError } from "../../contracts/index.js";
import { causes } from "../support/causes.js";
import { FencedError } from "../cluster/index.js";
import { isTransientJetStreamError } from "../nats/index.js";
import { QueriesOverloaded, QueryUnavailable } from "../persistence/query-thread.js";
import { CommitOutcomeUnknown } from "../persistence/commit-outcome.js";
import { WriteWorkerStopped } from "../persistence/sqlite-write-worker.js";
import { isValueOutOfRange } from "../persistence/integer-column.js";
import { PoisonEventError } from "./subscriber.js";

/**
 * Whether an event's failure is its own and the same at every try: it breaks the contract, or holds a
 * number its read model's column cannot (PostgreSQL's 22003: a version past 2^31 − 1). Parked at once by
 * the runner; a dead letter's retry of it is refused `rule_violated`.
 */
export function isPoisonFailure(err: unknown): boolean {
  return err instanceof PoisonEventError || isValueOutOfRange(err);
}

/** Node's socket errors of a database connection that went away or never came. */
const SOCKET_CODES: ReadonlySet<string> = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

/**
 * SQLSTATEs of PostgreSQL that end by themselves: class 08 (connection exception), 53 (insufficient
 * resources), 57P01–57P03 (the server shutting down or starting), 40001 and 40P01 (serialization
 * failure, deadlock: retry the transaction), 55P03 (lock not available), 25006 (read-only transaction:
 * a pooled connection still on a former primary, now a standby, after a failover) and 57014 (statement
 * cancelled: statement_timeout, or an operator's pg_cancel_backend).
 */
function transientSqlState(code: string): boolean {
  return code.startsWith("08") || code.startsWith("53") || /^57P0[123]$/.test(code) || ["40001", "40P01", "55P03", "25006", "57014"].includes(code);
}

/** SQLite's result codes that end by themselves: a lock held elsewhere, a full disk or an I/O error (an operator's to fix, not the event's). */
function transientSqlite(code: string): boolean {
  return code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") || code === "SQLITE_FULL" || code.startsWith("SQLITE_IOERR");
}

/** Whether a failure of an event's handling is transient (see the module's comment); follows `cause` a few links down. */
export function isTransientFailure(err: unknown): boolean {
  for (const e of causes(err)) {
    if (isNerveError(e)) return e.retryable;
    if (e instanceof FencedError || e instanceof WriteWorkerStopped || e instanceof QueryUnavailable || e instanceof QueriesOverloaded || e instanceof CommitOutcomeUnknown || isTransientJetStreamError(e)) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (SOCKET_CODES.has(code) || transientSqlite(code) || (/^[0-9A-Z]{5}$/.test(code) && transientSqlState(code)))) return true;
    // The last: Knex's KnexTimeoutError (every pooled connection busy for its acquire timeout), which has
    // no code, and whose name MikroORM's DriverException replaces.
    if (/Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Timeout acquiring a connection/i.test(e.message)) return true;
  }
  return false;
}

/**
 * What a transient failure (see {@link isTransientFailure}) was, in words for an `unavailable` reply:
 * the partition moved, JetStream, too many queries waiting, or the storage.
 */
export function transientReason(err: unknown): string {
  for (const e of causes(err)) {
    if (e instanceof FencedError) return "the aggregate's partition moved to another instance";
    if (isTransientJetStreamError(e)) return "JetStream unavailable";
    if (e instanceof QueriesOverloaded) return "too many queries waiting";
  }
  return "storage unavailable";
}
