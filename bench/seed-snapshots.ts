/** Stores user snapshots directly (no commands, no events): the cold state that activations load. */
import { fold, recordAt } from "../actors/decider.js";
import { userDecider } from "../actors/users/index.js";
import type { Command } from "../contracts/index.js";
import { writeBatch, type AggregateWrite, type Database } from "../src/persistence/index.js";

const NOW = "2026-01-15T12:00:00.000Z";

/** A user's state as the decider builds it: registered, then one profile update (version 2). */
export function seededUser(id: string, i: number): { state: unknown; version: number } {
  const register = { type: "RegisterUser", aggregate_id: id, now: NOW, body: { email: `${id}@seed.example`, name: `Seeded user ${i}` } } as Command;
  const registered = userDecider.decide(register as Command<"RegisterUser">, null, { emailOwner: null });
  const s1 = fold(userDecider, recordAt(registered, NOW));
  const update = { type: "UpdateUserProfile", aggregate_id: id, now: NOW, body: { profile_data: { bio: `Seeded bio #${i}`, locale: "en-GB" } } } as Command;
  const updated = userDecider.decide(update as Command<"UpdateUserProfile">, s1, { emailOwner: null });
  return { state: fold(userDecider, recordAt(updated, NOW), s1), version: 2 };
}

/** Writes snapshots for `ids` through the group commit's own SQL, a few thousand per transaction. */
export async function seedUserSnapshots(db: Database, ids: string[]): Promise<{ averageStateBytes: number }> {
  let bytes = 0;
  for (let i = 0; i < ids.length; i += 5000) {
    const batch: AggregateWrite[] = ids.slice(i, i + 5000).map((id, j) => {
      const { state, version } = seededUser(id, i + j);
      bytes += JSON.stringify(state).length;
      return { aggregateType: "User", aggregateId: id, baseVersion: 0, version, state, now: NOW, events: [] };
    });
    await db.connection.transactional((trx) => writeBatch(db.connection, trx, batch));
  }
  return { averageStateBytes: ids.length ? bytes / ids.length : 0 };
}
