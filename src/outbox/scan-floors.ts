/**
 * How far the relay's reads of the outbox table have got, per partition. Every row of a partition at or
 * below its floor has been read since the floors were last reset or lowered, and was published, or is held
 * back (a hold remembers the lowest seq it holds back, and lowers the floors there for its retry). So a
 * read takes only rows above the floors: the rows a failure holds back are not read, and skipped, again
 * and again — a stream that is away for an hour would otherwise fill every read with its own rows.
 *
 * Why no row is missed: within a partition seq grows in commit order (one writer: the partition's owner),
 * so a row committed after a read lies above every row of its partition that the read could see. And the
 * relay's own writer commits one transaction after the other and hands each over once committed: a row
 * committed after a read lies above every seq handed over before the read began, in any partition. (A row
 * committed without being handed over breaks that; the live relay's look for such rows reads from the start.)
 */
import { PARTITIONS } from "../cluster/partition.js";
import type { OutboxRow } from "../persistence/index.js";
import { partitionOfRow } from "./held-partitions.js";

/** Per partition, the seq up to which the relay's reads have taken every row (see above). */
export class ScanFloors {
  readonly #floor = new Float64Array(PARTITIONS);
  /** A floor went down (or all were reset) since the last read: rows published before may lie above it, not yet deleted. */
  #lowered = true;

  /** Every row is to be read again (a start, the relay leaving live mode). */
  reset(): void {
    this.#floor.fill(0);
    this.#lowered = true;
  }

  /** Partition `p`'s rows are to be read again from `seq` on (0: all of them). */
  lower(p: number, seq: number): void {
    if (seq >= this.#floor[p]!) return;
    this.#floor[p] = Math.max(0, seq);
    this.#lowered = true;
  }

  /** Every partition's rows are to be read again from `seq` on. */
  lowerAll(seq: number): void {
    for (let p = 0; p < PARTITIONS; p++) this.lower(p, seq);
  }

  /** Partition `p`'s floor. */
  of(p: number): number {
    return this.#floor[p]!;
  }

  /** Whether a floor went down since the last call (then the rows published before must be deleted before reading). */
  takeLowered(): boolean {
    const lowered = this.#lowered;
    this.#lowered = false;
    return lowered;
  }

  /** The lowest floor of `partitions` (every one when undefined): the next read takes rows above it. */
  from(partitions: readonly number[] | undefined): number {
    let low = Infinity;
    if (partitions === undefined) for (const f of this.#floor) low = Math.min(low, f);
    else for (const p of partitions) low = Math.min(low, this.#floor[p]!);
    return low === Infinity ? 0 : low;
  }

  /** Whether `row` lies above its partition's floor (not read since). */
  above(row: OutboxRow): boolean {
    return Number(row.seq) > this.#floor[partitionOfRow(row)]!;
  }

  /**
   * A read of `partitions` (every one when undefined) took `rows` (in seq order, at most its limit: `full`
   * when it reached it) above {@link from}, and every one is now published or held back; `handed` is the
   * highest seq handed over at commit before the read began. Raises each partition's floor to what the read
   * covered: its rows up to the last read, and, below the read's last seq, up to `handed` (committed before
   * the read began, so the read saw them).
   */
  advance(rows: readonly OutboxRow[], full: boolean, handed: number, partitions: readonly number[] | undefined): void {
    const covered = full && rows.length > 0 ? Math.min(handed, Number(rows[rows.length - 1]!.seq)) : handed;
    if (partitions === undefined) for (let p = 0; p < PARTITIONS; p++) this.#raise(p, covered);
    else for (const p of partitions) this.#raise(p, covered);
    for (const r of rows) this.#raise(partitionOfRow(r), Number(r.seq));
  }

  #raise(p: number, seq: number): void {
    if (seq > this.#floor[p]!) this.#floor[p] = seq;
  }
}
