/**
 * The fence check a transaction that writes under leases runs first on PostgreSQL (every group commit,
 * every read-model batch of a consumer). It reads the leases `for key share`: the rows stay locked until
 * the transaction ends, so a takeover (which changes owner and epoch, key columns of nerve_leases) waits
 * for this commit or finds it rolled back, and a commit after a takeover finds a newer epoch and fails. A
 * former owner — even one paused past its lease that resumes mid-transaction (its session is ended by
 * idle_in_transaction_session_timeout meanwhile) — can never commit. A renewal changes lease_until alone,
 * which FOR KEY SHARE does not block: with `for share` one long fenced transaction (a slow statement, a
 * lock wait) held up the one renewal statement of all the group's leases, and the instance lost them all.
 */
import { leaseName } from "./leases.js";
import type { Fence } from "./ownership.js";

/** A write under a lease this instance no longer holds under the epoch it started with. */
export class FencedError extends Error {
  override readonly name = "FencedError";
  constructor(readonly leases: string[]) {
    super(`${leases.join(", ")} moved to another instance: not committed`);
  }
}

/** A lease that must still be held, by name, and the epoch it must still have. */
export interface LeaseCheck {
  lease: string;
  epoch: number;
}

/** Runs one statement in the transaction. */
type Exec = <T = unknown[]>(sql: string, params: unknown[], method: "all" | "run") => Promise<T>;

/** Checks, inside the transaction, that `owner` still holds every lease under its epoch; throws FencedError. */
export async function checkLeases(exec: Exec, owner: string, checks: readonly LeaseCheck[]): Promise<void> {
  const want = new Map<string, number>();
  for (const c of checks) want.set(c.lease, c.epoch);
  if (want.size === 0) return;
  const names = [...want.keys()];
  const rows = await exec<{ lease_key: string; owner: string | null; epoch: number | string }[]>(
    `select lease_key, owner, epoch from nerve_leases where lease_key in (${names.map(() => "?").join(",")}) for key share`,
    names,
    "all",
  );
  const ok = new Set(rows.filter((r) => r.owner === owner && Number(r.epoch) === want.get(r.lease_key)).map((r) => r.lease_key));
  const moved = names.filter((n) => !ok.has(n));
  if (moved.length > 0) throw new FencedError(moved.sort());
}

/** The group of the partitions' leases. */
export const PARTITION_GROUP = "partitions";

/** Checks partition fences (a group commit's): see {@link checkLeases}. */
export function checkFences(exec: Exec, owner: string, fences: readonly Fence[]): Promise<void> {
  return checkLeases(
    exec,
    owner,
    fences.map((f) => ({ lease: leaseName(PARTITION_GROUP, String(f.partition)), epoch: f.epoch })),
  );
}
