/**
 * A projection's batch as statements, for the SQLite write worker: the inbox inserts first, then each
 * event's statements only when its inbox row was new. Built on the main thread by a subscriber whose
 * `apply` only writes (the statements are recorded, not run), run in one transaction on the worker's
 * connection beside the group commits. It imports nothing, so the worker loads only this.
 */
import type { Exec } from "./batch-statements.js";

/** One statement with its values (bound, never formatted into the text). */
export interface BatchStatement {
  sql: string;
  params: unknown[];
}

/** A consumer's batch: inbox inserts (`… returning event_id`), then the events in stream order. */
export interface ConsumerBatch {
  inbox: BatchStatement[];
  events: { eventId: string; statements: BatchStatement[] }[];
}

/** Who can run a {@link ConsumerBatch} in one transaction: resolves with, by event, whether it was new (and so applied). */
export interface ConsumerBatchWriter {
  applyConsumerBatch(batch: ConsumerBatch): Promise<boolean[]>;
}

/**
 * Runs `batch` with `exec` inside the caller's transaction. An event whose id the inbox inserts did not
 * return was handled before (or is a second copy in this batch): its statements are skipped.
 */
export async function runConsumerBatch(exec: Exec, batch: ConsumerBatch): Promise<boolean[]> {
  const fresh = new Set<string>();
  for (const st of batch.inbox) for (const r of await exec<{ event_id: string }[]>(st.sql, st.params, "all")) fresh.add(r.event_id);
  const handled: boolean[] = [];
  for (const e of batch.events) {
    // Taken out on first sight: a second copy of an event in one batch is a duplicate.
    if (!fresh.delete(e.eventId)) {
      handled.push(false);
      continue;
    }
    for (const st of e.statements) await exec(st.sql, st.params, "run");
    handled.push(true);
  }
  return handled;
}
