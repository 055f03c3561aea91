/** `search`: a full-text index of active courses (SQLite FTS5), and SearchCatalog (CONTRACT.md §4, §5). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, type QueryResult } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import { COURSE_EVENTS, applyCourseEvent, catalogItemOf, courseRowProperties, isCourseEvent, type CourseRow } from "./course-rows.js";
import { typedEvent } from "./typed-event.js";

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

// An active document is in the index under its doc_id; a deprecated one is not.
const INDEX_IF_ACTIVE = `insert into ${SEARCH_FTS_TABLE} (rowid, title, description) select new.doc_id, new.title, new.description where new.status = 'active';`;

/** Triggers that keep the FTS5 index equal to the active documents (SQLite only; created by `setup`). */
export const SEARCH_FTS_TRIGGERS = [
  `create trigger if not exists search_documents_fts_insert after insert on search_documents begin ${INDEX_IF_ACTIVE} end`,
  `create trigger if not exists search_documents_fts_update after update of title, description, status on search_documents begin delete from ${SEARCH_FTS_TABLE} where rowid = old.doc_id; ${INDEX_IF_ACTIVE} end`,
  `create trigger if not exists search_documents_fts_delete after delete on search_documents begin delete from ${SEARCH_FTS_TABLE} where rowid = old.doc_id; end`,
];

/** Default and largest number of SearchCatalog results. */
export const SEARCH_LIMITS = { default: 20, max: 100 } as const;

// At most this many words of a query count: a longer text only slows the match down.
const MAX_TOKENS = 16;

/** The words of a user's text that can match anything: each has a letter or a digit. */
export function searchTokens(text: string): string[] {
  return text
    .normalize("NFKC")
    .split(/\s+/u)
    .filter((t) => /[\p{L}\p{N}]/u.test(t))
    .slice(0, MAX_TOKENS);
}

/**
 * An FTS5 MATCH expression for user text: every word quoted (so `"`, `*`, `:`, `NEAR`, `-` are plain
 * text, never syntax) and a prefix, all required. Null when nothing in the text can match.
 */
export function ftsQueryOf(text: string): string | null {
  const tokens = searchTokens(text);
  return tokens.length === 0 ? null : tokens.map((t) => `"${t.replaceAll('"', '""')}"*`).join(" ");
}

/** A LIKE pattern matching `token` anywhere, with `\` as the escape character. */
export const likePatternOf = (token: string): string => `%${token.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** The search projection: the same course events as the catalog; deprecated courses leave the index. */
export function search(): Subscriber {
  return {
    name: Consumers.Search,
    handles: { courses: [...COURSE_EVENTS] },
    entities: [SearchDocumentSchema],
    async setup(tx) {
      // PostgreSQL has no FTS5: its SearchCatalog falls back to ILIKE over search_documents.
      if (tx.dialect !== "sqlite") return;
      await tx.execute(`create virtual table if not exists ${SEARCH_FTS_TABLE} using fts5(title, description, tokenize = 'unicode61 remove_diacritics 2')`, [], "run");
      // The index follows its documents inside SQLite: an event is one statement on search_documents,
      // not three (each statement costs the driver ~40 µs, the trigger's work a few).
      for (const trigger of SEARCH_FTS_TRIGGERS) await tx.execute(trigger, [], "run");
    },
    // Each event is one insert or version-guarded update of its document; the triggers keep the index.
    writesOnly: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (isCourseEvent(e)) await applyCourseEvent(tx, "search_documents", e);
    },
    async reset(tx) {
      await tx.execute("delete from search_documents", [], "run");
      if (tx.dialect === "sqlite") await tx.execute(`delete from ${SEARCH_FTS_TABLE}`, [], "run");
    },
  };
}

/** SearchCatalog: active courses whose title or description matches every word of `text` (best first). */
export function searchCatalog(tx: Tx) {
  return async (body: { text: string; limit?: number }): Promise<QueryResult<"SearchCatalog">> => {
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
      const where = tokens.map(() => "(d.title ilike ? escape '\\' or d.description ilike ? escape '\\')").join(" and ");
      rows = await tx.execute<CourseRow[]>(
        `select ${columns} from search_documents d where d.status = ? and ${where} order by d.title, d.course_id limit ?`,
        ["active", ...tokens.flatMap((t) => [likePatternOf(t), likePatternOf(t)]), limit],
        "all",
      );
    }
    return { items: rows.map(catalogItemOf) };
  };
}
