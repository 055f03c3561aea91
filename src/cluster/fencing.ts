/**
 * The fence check every group-commit transaction runs first on PostgreSQL. It reads the leases of the
 * batch's partitions `for share`: the rows stay locked until the transaction ends, so a takeover (which
 * updates them) waits for this commit or finds it rolled back, and a commit after a takeover finds a
 * newer epoch and fails. A former owner — even one paused past its lease that resumes mid-transaction
 * (its session is ended by idle_in_transaction_session_timeout meanwhile) — can never commit.
 */
import type { Fence } from "./ownership.js";

/** A write in a partition this instance no longer holds under the epoch it decided with. */
export class FencedError extends Error {
  override readonly name = "FencedError";
  constructor(readonly partitions: number[]) {
    super(`partition(s) ${partitions.join(", ")} moved to another instance: not committed`);
  }
}

/** Runs one statement in the transaction. */
type Exec = <T = unknown[]>(sql: string, params: unknown[], method: "all" | "run") => Promise<T>;

/** Checks, inside the transaction, that `owner` still holds every fence under its epoch; throws FencedError. */
export async function checkFences(exec: Exec, owner: string, fences: readonly Fence[]): Promise<void> {
  const want = new Map<number, number>();
  for (const f of fences) want.set(f.partition, f.epoch);
  if (want.size === 0) return;
  const parts = [...want.keys()];
  const rows = await exec<{ partition_no: number; owner: string | null; epoch: number | string }[]>(
    `select partition_no, owner, epoch from nerve_leases where partition_no in (${parts.map(() => "?").join(",")}) for share`,
    parts,
    "all",
  );
  const ok = new Set(rows.filter((r) => r.owner === owner && Number(r.epoch) === want.get(Number(r.partition_no))).map((r) => Number(r.partition_no)));
  const moved = parts.filter((p) => !ok.has(p));
  if (moved.length > 0) throw new FencedError(moved.sort((a, b) => a - b));
}
