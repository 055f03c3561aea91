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

/** A consumer's batch: statements run first whatever the inbox says, inbox inserts (`… returning event_id`), then the events in stream order. */
export interface ConsumerBatch {
  /** Run first, each as it is (a replay's reset: the read model and its inbox emptied). */
  before?: BatchStatement[];
  inbox: BatchStatement[];
  events: { eventId: string; statements: BatchStatement[] }[];
}

/**
 * Who can run a {@link ConsumerBatch} in one transaction: resolves with, by event, whether it was new (and
 * so applied). With a `link`, the batch may be sent while the one before it on the same link is still
 * queued or committing, and commits only if that one did (else it fails with {@link BatchBeforeFailed}).
 */
export interface ConsumerBatchWriter {
  applyConsumerBatch(batch: ConsumerBatch, link?: BatchLink): Promise<boolean[]>;
  /**
   * Runs `fn` — a write transaction on the main connection — once this writer has no transaction in flight,
   * holding what it is sent meanwhile: the main thread then never waits for the write lock inside SQLite
   * (SqliteWriteWorker.exclusive). `fn` must not wait for this writer.
   */
  exclusive?<T>(fn: () => Promise<T>): Promise<T>;
}

/** What a writer on the main connection goes through, when the SQLite write worker runs beside it. */
export type ExclusiveWriter = Pick<ConsumerBatchWriter, "exclusive">;

/**
 * Runs `work` — a write on the main connection — through `writer`'s {@link ConsumerBatchWriter.exclusive}
 * when it has one (the SQLite write worker), else as it is.
 */
export function exclusively<T>(writer: ExclusiveWriter | undefined, work: () => Promise<T>): Promise<T> {
  return writer?.exclusive ? writer.exclusive(work) : work();
}

/** The batch before this one on its {@link BatchLink} did not commit, so this one was not run. */
export class BatchBeforeFailed extends Error {
  override readonly name = "BatchBeforeFailed";
}

/**
 * One reader's batch in a chain of them through the write worker, in stream order: the next batch may be
 * sent once this one is queued, without waiting for its commit, and the worker runs it only when this one
 * committed. So a later event never commits before an earlier one that failed (and is being retried).
 */
export class BatchLink {
  #state: "pending" | "queued" | "committed" | "failed" = "pending";
  #id: number | undefined;
  #before: BatchLink | undefined;
  #queued!: () => void;
  /** Settles once the batch is in the writer's queue, committed, or failed: when the next may be sent. */
  readonly queued = new Promise<void>((resolve) => (this.#queued = resolve));

  constructor(before?: BatchLink) {
    this.#before = before;
  }

  /** The batch before this one, until this one is queued (then it is let go: a chain holds two links, not all). */
  get before(): BatchLink | undefined {
    return this.#before;
  }

  get state(): "pending" | "queued" | "committed" | "failed" {
    return this.#state;
  }

  /** The writer's id of the request while it is queued. */
  get id(): number | undefined {
    return this.#state === "queued" ? this.#id : undefined;
  }

  /** Sent to the writer as request `id`. */
  queue(id: number): void {
    if (this.#state !== "pending") return;
    this.#state = "queued";
    this.#id = id;
    this.#before = undefined;
    this.#queued();
  }

  /** Committed (or nothing to commit): what follows no longer depends on it. */
  committed(): void {
    if (this.#state === "failed") return;
    this.#state = "committed";
    this.#before = undefined;
    this.#queued();
  }

  /** Did not commit (a writer's answer), or never reached the writer; a batch that committed stays committed. */
  failed(): void {
    if (this.#state === "committed") return;
    this.#state = "failed";
    this.#before = undefined;
    this.#queued();
  }
}

/**
 * Runs `batch` with `exec` inside the caller's transaction: its `before` statements, then its inbox inserts.
 * An event whose id those did not return was handled before (or is a second copy in this batch): its
 * statements are skipped.
 */
export async function runConsumerBatch(exec: Exec, batch: ConsumerBatch): Promise<boolean[]> {
  for (const st of batch.before ?? []) await exec(st.sql, st.params, "run");
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

/** A single-row statement that runs of its kind can share: what one of those multi-row statements is. */
interface Mergeable {
  /** Values bound per row. */
  params: number;
  /** Which of a row's values must differ between the rows of one statement (none: any may repeat). */
  distinct: number | undefined;
  /** The text of a statement of `rows` rows, bound with the rows' values one row after another. */
  sql(rows: number): string;
}

/** `insert into T (…) values (?, …, ?)` and a rest that binds nothing (`on conflict …` included, `returning` not). */
const SINGLE_ROW_INSERT = /^(insert into [\w"]+ \([^)?]*\)) values (\(\?(?:, \?)*\))([^?]*)$/is;
/** `update T set a = ?, … where K = ? and V < ?`: every assignment bound, a key, a version guard, nothing else. */
const GUARDED_UPDATE = /^update ([\w"]+) set ([\w"]+ = \?(?:, [\w"]+ = \?)*) where ([\w"]+) = \? and ([\w"]+) < \?$/is;
const mergeables = new Map<string, Mergeable | null>();

function mergeableOf(sql: string): Mergeable | null {
  let m = mergeables.get(sql);
  if (m !== undefined) return m;
  m = insertOf(sql) ?? updateOf(sql);
  // Bounded like the worker's statement cache: projections use a handful of texts.
  if (mergeables.size >= 1024) mergeables.clear();
  mergeables.set(sql, m);
  return m;
}

// SQLite inserts a statement's rows one after another, each conflict resolved against the rows before
// it, so the result is that of the single statements in order.
function insertOf(sql: string): Mergeable | null {
  const m = SINGLE_ROW_INSERT.exec(sql);
  if (!m || /\breturning\b/i.test(m[3]!)) return null;
  const [, head, row, tail] = m as unknown as [string, string, string, string];
  return { params: row.split("?").length - 1, distinct: undefined, sql: (rows) => `${head} values ${new Array<string>(rows).fill(row).join(", ")}${tail}` };
}

// `update … from (values …)` (SQLite ≥ 3.33): each row joined to its target by the key and applied only
// where the guard holds, as the single statements would. A target row joined twice would take one of
// them at random, so the key is the value that must differ within one statement; a repeated key starts
// the next statement, which runs after, as the later single statement did.
function updateOf(sql: string): Mergeable | null {
  const m = GUARDED_UPDATE.exec(sql);
  if (!m) return null;
  const [, table, assignments, key, guard] = m as unknown as [string, string, string, string, string];
  const columns = assignments.split(", ").map((a) => a.slice(0, a.indexOf(" = ")));
  const width = columns.length + 2;
  const set = columns.map((c, n) => `${c} = v.column${n + 1}`).join(", ");
  const row = `(${new Array<string>(width).fill("?").join(", ")})`;
  return {
    params: width,
    distinct: width - 2,
    sql: (rows) => `update ${table} set ${set} from (values ${new Array<string>(rows).fill(row).join(", ")}) as v where ${table}.${key} = v.column${width - 1} and ${table}.${guard} < v.column${width}`,
  };
}

/** Row counts of one merged statement, largest first: few distinct texts, so they stay prepared. */
const CHUNKS = [64, 16, 4, 1] as const;

/**
 * Runs of consecutive identical single-row inserts (`on conflict …` included, nothing bound after the
 * values) and of the same version-guarded update (`update T set … where K = ? and V < ?`: a CourseUpdated
 * in catalog and search, a ProgressUpdated in learner-progress) as statements of 64, 16, 4 and 1 rows,
 * with the result of the single statements in order (see insertOf, updateOf). Each statement costs the
 * driver about 40 µs however many rows it carries (~10 µs per row more), so a projection's batch of 256
 * inserts drops from ~12 ms to ~3 ms of the writer's time. Any other statement runs as it is, in its place.
 */
export function mergeStatements(statements: readonly BatchStatement[]): BatchStatement[] {
  const out: BatchStatement[] = [];
  for (let i = 0; i < statements.length; ) {
    const first = statements[i]!;
    const merge = mergeableOf(first.sql);
    let end = i + 1;
    if (merge && first.params.length === merge.params) {
      while (end < statements.length && statements[end]!.sql === first.sql && statements[end]!.params.length === merge.params) end++;
    }
    if (!merge || end - i === 1) {
      out.push(first);
      i++;
      continue;
    }
    while (i < end) {
      const rows = CHUNKS.find((c) => c <= roomAt(statements, i, end, merge.distinct))!;
      if (rows === 1) out.push(statements[i]!);
      else {
        const params: unknown[] = [];
        for (let k = i; k < i + rows; k++) params.push(...statements[k]!.params);
        out.push({ sql: merge.sql(rows), params });
      }
      i += rows;
    }
  }
  return out;
}

// How many rows of the run from `i` may share a statement: the rest of the run, or its longest prefix
// whose `distinct` values differ (either at most the largest chunk).
function roomAt(statements: readonly BatchStatement[], i: number, end: number, distinct: number | undefined): number {
  if (distinct === undefined) return end - i;
  const seen = new Set<unknown>();
  let n = 0;
  while (i + n < end && n < CHUNKS[0] && !seen.has(statements[i + n]!.params[distinct])) seen.add(statements[i + n++]!.params[distinct]);
  return n;
}
