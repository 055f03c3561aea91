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
  const statements: BatchStatement[] = [];
  for (const e of batch.events) {
    // Taken out on first sight: a second copy of an event in one batch is a duplicate.
    if (!fresh.delete(e.eventId)) {
      handled.push(false);
      continue;
    }
    statements.push(...e.statements);
    handled.push(true);
  }
  for (const st of mergeStatements(statements)) await exec(st.sql, st.params, "run");
  return handled;
}

/** A single-row `insert … values (?, …, ?) …` whose rest binds nothing: its head, its row, its tail. */
interface InsertShape {
  head: string;
  row: string;
  tail: string;
  params: number;
}

const SINGLE_ROW_INSERT = /^(insert into [\w"]+ \([^)?]*\)) values (\(\?(?:, \?)*\))([^?]*)$/is;
const shapes = new Map<string, InsertShape | null>();

function shapeOf(sql: string): InsertShape | null {
  let shape = shapes.get(sql);
  if (shape !== undefined) return shape;
  const m = SINGLE_ROW_INSERT.exec(sql);
  shape = m && !/\breturning\b/i.test(m[3]!) ? { head: m[1]!, row: m[2]!, tail: m[3]!, params: m[2]!.split("?").length - 1 } : null;
  // Bounded like the worker's statement cache: projections use a handful of texts.
  if (shapes.size >= 1024) shapes.clear();
  shapes.set(sql, shape);
  return shape;
}

/**
 * A single-row, version-guarded update: `update T set a = ?, … where K = ? and V < ?` (every assignment
 * bound, nothing else in it): its table, assigned columns, key column and guard column.
 */
interface UpdateShape {
  table: string;
  columns: string[];
  key: string;
  guard: string;
}

const GUARDED_UPDATE = /^update ([\w"]+) set ([\w"]+ = \?(?:, [\w"]+ = \?)*) where ([\w"]+) = \? and ([\w"]+) < \?$/is;
const updateShapes = new Map<string, UpdateShape | null>();

function updateShapeOf(sql: string): UpdateShape | null {
  let shape = updateShapes.get(sql);
  if (shape !== undefined) return shape;
  const m = GUARDED_UPDATE.exec(sql);
  shape = m ? { table: m[1]!, columns: m[2]!.split(", ").map((a) => a.slice(0, a.indexOf(" = "))), key: m[3]!, guard: m[4]! } : null;
  if (updateShapes.size >= 1024) updateShapes.clear();
  updateShapes.set(sql, shape);
  return shape;
}

/** Row counts of one merged statement, largest first: few distinct texts, so they stay prepared. */
const CHUNKS = [64, 16, 4, 1] as const;

/**
 * Runs of consecutive identical single-row inserts (`on conflict …` included, nothing bound after the
 * values) as multi-row inserts of 64, 16, 4 and 1 rows. SQLite inserts a statement's rows one after
 * another, each conflict resolved against the rows before it, so the result is that of the single
 * statements in order; each statement costs the driver about 40 µs however many rows it carries
 * (~10 µs per row more), so a projection's batch of 256 inserts drops from ~12 ms to ~3 ms of the
 * writer's time. Runs of the same version-guarded update (`update T set … where K = ? and V < ?`: a
 * CourseUpdated in catalog and search, a ProgressUpdated in learner-progress) are merged the same way
 * ({@link mergeUpdates}). Any other statement runs as it is, in its place.
 */
export function mergeStatements(statements: readonly BatchStatement[]): BatchStatement[] {
  const out: BatchStatement[] = [];
  for (let i = 0; i < statements.length; ) {
    const first = statements[i]!;
    const update = updateShapeOf(first.sql);
    if (update) {
      i = mergeUpdates(statements, i, update, out);
      continue;
    }
    const shape = shapeOf(first.sql);
    let j = i + 1;
    if (shape && first.params.length === shape.params) {
      while (j < statements.length && statements[j]!.sql === first.sql && statements[j]!.params.length === shape.params) j++;
    }
    if (!shape || j - i === 1) {
      out.push(first);
      i++;
      continue;
    }
    while (i < j) {
      const rows = CHUNKS.find((c) => c <= j - i)!;
      if (rows === 1) out.push(statements[i]!);
      else {
        const params: unknown[] = [];
        for (let k = i; k < i + rows; k++) params.push(...statements[k]!.params);
        out.push({ sql: `${shape.head} values ${new Array<string>(rows).fill(shape.row).join(", ")}${shape.tail}`, params });
      }
      i += rows;
    }
  }
  return out;
}

/**
 * The run of identical guarded updates starting at `i` as `update … from (values …)` statements of 64,
 * 16, 4 and 1 rows (SQLite ≥ 3.33), each row joined to its target by the key and applied only where the
 * guard holds, as the single statements would. A row of the target joined twice would take one of them
 * at random, so a chunk never holds a key twice: a repeated key starts the next chunk, which runs after,
 * as the later single statement did. Returns where the run ends.
 */
function mergeUpdates(statements: readonly BatchStatement[], i: number, shape: UpdateShape, out: BatchStatement[]): number {
  const sql = statements[i]!.sql;
  const width = shape.columns.length + 2;
  let end = i + 1;
  while (end < statements.length && statements[end]!.sql === sql && statements[end]!.params.length === width) end++;
  if (statements[i]!.params.length !== width) {
    out.push(statements[i]!);
    return i + 1;
  }
  while (i < end) {
    // The longest prefix (at most 64) with distinct keys.
    const keys = new Set<unknown>();
    let distinct = 0;
    while (i + distinct < end && distinct < CHUNKS[0] && !keys.has(statements[i + distinct]!.params[width - 2])) keys.add(statements[i + distinct++]!.params[width - 2]);
    const rows = CHUNKS.find((c) => c <= distinct)!;
    if (rows === 1) out.push(statements[i]!);
    else {
      const params: unknown[] = [];
      for (let k = i; k < i + rows; k++) params.push(...statements[k]!.params);
      const row = `(${new Array<string>(width).fill("?").join(", ")})`;
      const set = shape.columns.map((c, n) => `${c} = v.column${n + 1}`).join(", ");
      out.push({
        sql: `update ${shape.table} set ${set} from (values ${new Array<string>(rows).fill(row).join(", ")}) as v where ${shape.table}.${shape.key} = v.column${width - 1} and ${shape.table}.${shape.guard} < v.column${width}`,
        params,
      });
    }
    i += rows;
  }
  return end;
}
