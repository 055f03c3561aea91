/**
 * A replay's first step: the subscriber's read model emptied (its `reset`) and, for a projection, its inbox,
 * in one transaction — a replay that stops half-way must find either everything or nothing deleted, since
 * the rebuilt rows are applied on top of what is left.
 */
import type { BatchStatement, ConsumerBatchWriter, Database } from "../persistence/index.js";
import { recorder, txOf } from "./event-handler.js";
import type { Subscriber, Tx } from "./subscriber.js";

/**
 * Empties `s`'s read model and inbox in one transaction. With the SQLite write worker, the deletes are
 * recorded here and run by it as one batch, beside the group commits: better-sqlite3 runs a statement on
 * the calling thread, and a whole-table delete of a large read model (a million notifications) on the main
 * connection stood the event loop still for as long as it took (`NERVE_SQLITE_WRITER=inline` runs the
 * batch on the main thread, as everything of that writer). Without one (PostgreSQL), on the main connection.
 * `fence` (a consumer lease's check) runs first in the transaction, as in every read-model transaction, and
 * throws to delete nothing; with a fence the reset takes the main connection, whose transaction it shares.
 */
export async function resetReadModel(db: Database, s: Subscriber, writer?: ConsumerBatchWriter, fence?: (exec: Tx["execute"]) => Promise<void>): Promise<void> {
  const inbox: BatchStatement | undefined = s.apply ? { sql: "delete from consumer_inbox where consumer = ?", params: [s.name] } : undefined;
  if (writer && !fence) {
    const before: BatchStatement[] = [];
    await s.reset?.(recorder(s.name, db.dialect, before, "may only delete in its reset, but it read"));
    if (inbox) before.push(inbox);
    await writer.applyConsumerBatch({ before, inbox: [], events: [] });
    return;
  }
  await db.connection.transactional(async (trx) => {
    const tx = txOf(db, trx);
    await fence?.(tx.execute);
    await s.reset?.(tx);
    if (inbox) await tx.execute(inbox.sql, inbox.params, "run");
  });
}
