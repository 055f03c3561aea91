/** `search`: a full-text index of active courses (SQLite FTS5; pg_trgm on PostgreSQL), and SearchCatalog (CONTRACT.md §4, §5). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, type QueryResult } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import { COURSE_EVENTS, applyCourseEvent, courseRowShows, catalogItemOf, courseRowProperties, isCourseEvent, type CourseRow } from "./course-rows.js";
import { typedEvent } from "./typed-event.js";
import { withinRoom, type ReplyRoom } from "../support/byte-budget.js";

/** A searchable course; `doc_id` is the FTS5 rowid, so the index row is found without a scan. */
export interface SearchDocumentRow extends CourseRow {
  doc_id: number;
}

/** Search documents table: the search context's own copy of each course. */
export const SearchDocumentSchema = new EntitySchema<SearchDocumentRow>({
  name: "SearchDocument",
  tableName: "search_documents",
  properties: {
    doc_id: { type: "integer", primary: true, autoincrement: true, fieldName: "doc_id" },
    course_id: { type: "string", length: 64, unique: true, fieldName: "course_id" },
    ...courseRowProperties,
  },
});

/** The FTS5 table; MikroORM cannot describe virtual tables, so `setup` creates it (named `*_fts`: see HAND_MADE_TABLES). */
export const SEARCH_FTS_TABLE = "search_fts";

/**
 * The FTS5 table's columns and options. `prefix = '2 3'` keeps every term's 2- and 3-character prefixes
 * in the index as well: a 2- or 3-character prefix term (`"co"*`) then reads one list instead of merging
 * those of every term it begins (`npm run bench:search`, 50,000 courses: "co" begins 2,467 terms, and
 * eight such prefixes took 517 ms without it, 140 with it). The FTS5 tables grow from 103 to 152 MiB there
 * (65 of them the text itself), and indexing takes 1.3–1.8 times as long (about 0.1 ms a course).
 */
export const SEARCH_FTS_DEFINITION = "fts5(title, description, prefix = '2 3', tokenize = 'unicode61 remove_diacritics 2')";

// An active document is in the index under its doc_id; a deprecated one is not.
const INDEX_IF_ACTIVE = `insert into ${SEARCH_FTS_TABLE} (rowid, title, description) select new.doc_id, new.title, new.description where new.status = 'active';`;

/** Triggers that keep the FTS5 index equal to the active documents (SQLite only; created by `setup`). */
export const SEARCH_FTS_TRIGGERS = {
  search_documents_fts_insert: `create trigger if not exists search_documents_fts_insert after insert on search_documents begin ${INDEX_IF_ACTIVE} end`,
  search_documents_fts_update: `create trigger if not exists search_documents_fts_update after update of title, description, status on search_documents begin delete from ${SEARCH_FTS_TABLE} where rowid = old.doc_id; ${INDEX_IF_ACTIVE} end`,
  search_documents_fts_delete: `create trigger if not exists search_documents_fts_delete after delete on search_documents begin delete from ${SEARCH_FTS_TABLE} where rowid = old.doc_id; end`,
} as const;

// Documents indexed per statement when `setup` rebuilds the index: the main connection's statement runs on the
// event loop and holds the write lock, so 50,000 courses (5–7 s) go in steps of about half a second.
const REBUILD_STEP = 5000;

/**
 * Brings the FTS5 index to {@link SEARCH_FTS_DEFINITION}, on SQLite; nothing when it is there already. An
 * index of another definition (a deployment from before the prefix index), or one left half-built, is
 * rebuilt from search_documents — the search context's own copy of every course, so no replay is needed:
 * the triggers dropped, the table made anew and filled, the triggers made last. Their presence marks a
 * finished build, so a start that stops half-way is followed by a start that builds again. It runs before
 * the consumers, while nothing else writes search_documents.
 */
export async function setupSearchIndex(tx: Tx, logger?: Logger): Promise<void> {
  const names = [SEARCH_FTS_TABLE, ...Object.keys(SEARCH_FTS_TRIGGERS)];
  const found = await tx.execute<{ name: string; sql: string }[]>(`select name, sql from sqlite_master where name in (${names.map(() => "?").join(", ")})`, names, "all");
  const table = found.find((r) => r.name === SEARCH_FTS_TABLE);
  // SQLite keeps the statement as written but for its first words (`CREATE VIRTUAL TABLE`).
  if (found.length === names.length && table?.sql.endsWith(`using ${SEARCH_FTS_DEFINITION}`)) return;
  const started = performance.now();
  const { top } = await tx.execute<{ top: number | null }>("select max(doc_id) as top from search_documents", [], "get");
  // A start that takes seconds longer than the last one says why.
  if (top !== null) logger?.info({ definition: SEARCH_FTS_DEFINITION, was: table?.sql ?? null }, "search: building the full-text index anew from search_documents");
  for (const name of Object.keys(SEARCH_FTS_TRIGGERS)) await tx.execute(`drop trigger if exists ${name}`, [], "run");
  await tx.execute(`drop table if exists ${SEARCH_FTS_TABLE}`, [], "run");
  await tx.execute(`create virtual table ${SEARCH_FTS_TABLE} using ${SEARCH_FTS_DEFINITION}`, [], "run");
  for (let from = 0; from < (top ?? 0); from += REBUILD_STEP) {
    await tx.execute(
      `insert into ${SEARCH_FTS_TABLE} (rowid, title, description) select doc_id, title, description from search_documents where doc_id > ? and doc_id <= ? and status = 'active'`,
      [from, from + REBUILD_STEP],
      "run",
    );
  }
  // The index follows its documents inside SQLite: an event is one statement on search_documents,
  // not three (each statement costs the driver ~40 µs, the trigger's work a few).
  for (const trigger of Object.values(SEARCH_FTS_TRIGGERS)) await tx.execute(trigger, [], "run");
  if (top !== null) logger?.info({ ms: Math.round(performance.now() - started) }, "search: full-text index built");
}

/** PostgreSQL's trigram indexes of search_documents, by name: the column each covers (named `*_trgm`: see HAND_MADE_INDEXES). */
export const SEARCH_TRIGRAM_INDEXES = { search_documents_title_trgm: "title", search_documents_description_trgm: "description" } as const;

/**
 * Makes the trigram indexes (pg_trgm, GIN) on PostgreSQL, where SearchCatalog matches each word with
 * `ilike '%word%'` on the title or the description: without them every search read the whole table
 * (430–530 ms over 100,000 courses here; 1.4–2.4 ms with them). pg_trgm is a trusted extension from PostgreSQL 13, so the database's owner
 * may create it. Where it cannot be made (no CREATE on the database, the contrib package missing, a
 * table lock not granted within the start's lock_timeout), searches still work, by scanning: a warning,
 * and the start goes on; the next start tries again. Runs inside the start's schema change, where a
 * savepoint keeps a refused statement from ending the transaction.
 */
export async function setupSearchTrigrams(tx: Tx, logger?: Logger): Promise<void> {
  const names = Object.keys(SEARCH_TRIGRAM_INDEXES);
  const found = await tx.execute<unknown[]>("select indexname from pg_indexes where schemaname = current_schema() and tablename = ? and indexname in (?, ?)", ["search_documents", ...names], "all");
  if (found.length === names.length) return;
  await tx.execute("savepoint search_trigrams", [], "run");
  try {
    await tx.execute("create extension if not exists pg_trgm", [], "run");
    for (const [name, column] of Object.entries(SEARCH_TRIGRAM_INDEXES)) await tx.execute(`create index if not exists ${name} on search_documents using gin (${column} gin_trgm_ops)`, [], "run");
    await tx.execute("release savepoint search_trigrams", [], "run");
  } catch (err) {
    await tx.execute("rollback to savepoint search_trigrams", [], "run");
    logger?.warn({ err: String(err) }, "search: no trigram indexes (pg_trgm); SearchCatalog scans search_documents until a start makes them");
  }
}

/** Default and largest number of SearchCatalog results. */
export const SEARCH_LIMITS = { default: 20, max: 100 } as const;

/**
 * At most this many words of a text count; the rest are ignored. Each word is one more list to intersect
 * (and on PostgreSQL two more trigram index scans), and the contract takes any text of up to 200 characters — a
 * hundred one-letter words — so a longer text is answered, not refused: by its first words, which find
 * every course all its words would, and maybe more.
 */
export const SEARCH_MAX_WORDS = 8;

/**
 * The words of a user's text that can match anything (each has a letter or a digit): the first
 * {@link SEARCH_MAX_WORDS}. Composed (NFC), not folded (NFKC): the index holds titles as written, and a
 * title with a ligature or full-width letters ("Eﬃcient", "Ｐｙｔｈｏｎ") was not found by its own text,
 * folded to "Efficient" and "Python" (read-model audit).
 */
export function searchTokens(text: string): string[] {
  return text
    .normalize("NFC")
    .split(/\s+/u)
    .filter((t) => /[\p{L}\p{N}]/u.test(t))
    .slice(0, SEARCH_MAX_WORDS);
}

// Marks around a word that FTS5's tokenizer ignores (as it ignores everything but letters and digits), and
// that a PostgreSQL pattern would require: `rust:`, `"rust"`, `-rust` found nothing there (read-model audit).
// Not `+` or `#`, which end words like "c++" and "c#" (their pattern keeps them: "%c%" would match almost all).
const WRAPPING = /^(?:(?![+#])[\p{P}\p{S}])+|(?:(?![+#])[\p{P}\p{S}])+$/gu;

/**
 * A word's PostgreSQL patterns: the word less the marks around it, in its composed form and, when they
 * differ, its decomposed one — a title stored decomposed (NFD, as some keyboards send it) was not found
 * by its composed spelling, nor the other way round (read-model audit). Either matches.
 */
export function likePatternsOf(word: string): string[] {
  const bare = word.replace(WRAPPING, "") || word;
  const forms = new Set([bare.normalize("NFC"), bare.normalize("NFD")]);
  return [...forms].map(likePatternOf);
}

// The terms FTS5's unicode61 tokenizer makes of a word: runs of letters, digits and private-use characters
// (anything else, marks included, separates them: "node.js" is the phrase "node js").
const FTS_TERM = /[\p{L}\p{N}\p{Co}]+/gu;

/** Whether the last term of `word` — the one a `*` would make a prefix — is one character long. */
function endsInOneCharacter(word: string): boolean {
  const last = word.match(FTS_TERM)?.at(-1) ?? "";
  return [...last].length === 1;
}

/**
 * An FTS5 MATCH expression for user text: every word quoted (so `"`, `*`, `:`, `NEAR`, `-` are plain
 * text, never syntax), all required, and a prefix — but for a word ending in a one-character term ("c",
 * "R", "c++"), which is matched whole: a one-letter prefix stands for a twentieth of the vocabulary (no
 * prefix index helps: eight of them took 230 ms with one), 16 of them took 1.2–1.8 s over 50,000 courses,
 * and "c programming" means the language C. Null when nothing in the text can match.
 */
export function ftsQueryOf(text: string): string | null {
  const tokens = searchTokens(text);
  return tokens.length === 0 ? null : tokens.map((t) => `"${t.replaceAll('"', '""')}"${endsInOneCharacter(t) ? "" : "*"}`).join(" ");
}

/** A LIKE pattern matching `token` anywhere, with `\` as the escape character. */
export const likePatternOf = (token: string): string => `%${token.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** The search projection: the same course events as the catalog; deprecated courses leave the index. `logger` hears of a rebuilt index. */
export function search(deps: { logger?: Logger } = {}): Subscriber {
  return {
    name: Consumers.Search,
    handles: { courses: [...COURSE_EVENTS] },
    entities: [SearchDocumentSchema],
    async setup(tx) {
      // PostgreSQL has no FTS5: its SearchCatalog matches with ILIKE, through trigram indexes.
      if (tx.dialect === "sqlite") await setupSearchIndex(tx, deps.logger);
      else await setupSearchTrigrams(tx, deps.logger);
    },
    // Each event is one insert or version-guarded update of its document; the triggers keep the index.
    writesOnly: true,
    // As the catalog: created with `on conflict do nothing`, changed only by a higher aggregate_version.
    idempotentWithoutInbox: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (isCourseEvent(e)) await applyCourseEvent(tx, "search_documents", e);
    },
    async shows(raw, tx) {
      const e = typedEvent(raw);
      return !isCourseEvent(e) || (await courseRowShows(tx, "search_documents", e));
    },
    async reset(tx) {
      await tx.execute("delete from search_documents", [], "run");
      if (tx.dialect === "sqlite") await tx.execute(`delete from ${SEARCH_FTS_TABLE}`, [], "run");
    },
  };
}

/**
 * SearchCatalog: active courses whose title or description matches every word of `text` — its first
 * {@link SEARCH_MAX_WORDS} — best first: at most `limit`, and, given the reply's `room`, as many of them as
 * it carries. SearchCatalog has no pages, so an answer too large is cut rather than refused: 30 courses with
 * 40 KB descriptions made a valid `limit: 100` an answer of 1.2 MB, refused for data the caller cannot change.
 */
export function searchCatalog(tx: Tx) {
  return async (body: { text: string; limit?: number }, room?: ReplyRoom): Promise<QueryResult<"SearchCatalog">> => {
    const limit = Math.min(body.limit ?? SEARCH_LIMITS.default, SEARCH_LIMITS.max);
    const columns = "d.course_id, d.title, d.description, d.price_amount, d.price_currency, d.instructor_id, d.policy_id";
    let rows: CourseRow[];
    if (tx.dialect === "sqlite") {
      const match = ftsQueryOf(body.text);
      if (match === null) return { items: [] };
      rows = await tx.execute<CourseRow[]>(
        `select ${columns} from ${SEARCH_FTS_TABLE} f join search_documents d on d.doc_id = f.rowid where ${SEARCH_FTS_TABLE} match ? and d.status = ? order by f.rank, d.title, d.course_id limit ?`,
        [match, "active", limit],
        "all",
      );
    } else {
      const tokens = searchTokens(body.text);
      if (tokens.length === 0) return { items: [] };
      const patterns = tokens.map(likePatternsOf);
      const where = patterns.map((ps) => `(${ps.map(() => "d.title ilike ? escape '\\' or d.description ilike ? escape '\\'").join(" or ")})`).join(" and ");
      rows = await tx.execute<CourseRow[]>(
        `select ${columns} from search_documents d where d.status = ? and ${where} order by d.title, d.course_id limit ?`,
        ["active", ...patterns.flatMap((ps) => ps.flatMap((p) => [p, p])), limit],
        "all",
      );
    }
    const items = rows.map(catalogItemOf);
    return { items: room ? withinRoom(items, room, (fit) => ({ items: fit })) : items };
  };
}
