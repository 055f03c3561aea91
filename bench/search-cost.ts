/**
 * `npm run bench:search [-- COURSES]`: what one SearchCatalog costs on SQLite, where every read model's query
 * waits its turn on the one query thread. A SQLite file with COURSES active courses (default 50,000): 6-word
 * titles and 150-word descriptions drawn, Zipf-like, from English function words, course words and 40,000
 * made-up words (first letters as often as in English), so that a short prefix expands to as many terms as
 * it would in real text. Then, through Database.query (the query thread), worst-case texts (many one-, two-
 * and three-letter words, common words) and typical ones, five times each, limit 20: the FTS5 expression,
 * results, median and longest wall time. Also the index's build time and size, and the time `setup` takes
 * to bring an index of the previous definition (no prefix index) up to date. Writes nothing to bench/results.
 */
import { performance } from "node:perf_hooks";
import { stat } from "node:fs/promises";
import { txOf, type Tx } from "../src/consumers/index.js";
import { openDatabase } from "../src/persistence/index.js";
import { readModelEntities } from "../src/projections/index.js";
import { SEARCH_FTS_TABLE, ftsQueryOf, search, searchCatalog } from "../src/projections/search.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { median } from "./percentiles.js";
import { table } from "./table.js";
import { insertSearchDocuments } from "./search-documents.js";

const courses = Number(process.argv[2] ?? 50_000);
const ROUNDS = 5;

const WORST = [
  "a b c d e f g h i j k l m n o p",
  "a c r a c r a c r a c r",
  "co pr in re di tr su de th an",
  "con pro com pre int dis tra sub",
  "cons prov comp pred inte disc tran subt",
  "the and of to in for with on a is",
  Array.from({ length: 100 }, (_, i) => "abcdefghijklmnopqrstuvwxyz"[i % 26]).join(" "),
];
const TYPICAL = ["python", "machine learning", "introduction to data science", "typ", "ty", "c programming", "ai for beginners", "web development with javascript", "zzzz"];

const FUNCTION_WORDS = "the of and to a in is for on with as by at from this that it an be or are you your we will how".split(" ");
const COURSE_WORDS = ("introduction advanced python javascript typescript data science machine learning design music guitar cooking finance marketing " +
  "beginners programming web development c ai ux go r sql statistics photography business management leadership writing spanish french " +
  "drawing painting yoga fitness nutrition excel accounting economics physics chemistry biology history philosophy psychology").split(" ");

// Made-up words shaped like English ones: first letters about as often as in English, and a third of them
// built on a common prefix (con-, pro-, inter-, …) as real vocabularies are, so that "con"* expands to
// hundreds of terms as it would in real text; many with a suffix.
const FIRST = "aaaaaaaaaaabbbbbcccccccccdddddddeeeeefffffggghhhhhiiiiijkllllmmmmmmnnnoooppppppppqrrrrrssssssssssssssttttttttuuvvvwwwwwxyz";
const PREFIXES = "con pro com pre inter dis re un in trans sub super de ex im per over under mis counter".split(" ");
const SUFFIXES = "ing ed er tion ment able s ly ness ive al ous ize ist".split(" ");
const CONSONANTS = "bcdfghklmnprstvwz";
const VOWELS = "aeiou";

// A deterministic generator (mulberry32), so that every run searches the same courses.
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function vocabulary(rnd: () => number): string[] {
  const pick = (from: string | string[]) => from[Math.floor(rnd() * from.length)]!;
  const made = new Set<string>();
  while (made.size < 40_000) {
    let w = rnd() < 0.35 ? pick(PREFIXES) : pick(FIRST);
    const length = w.length + 2 + Math.floor(rnd() * 6);
    while (w.length < length) w += VOWELS.includes(w.at(-1)!) ? pick(CONSONANTS) : pick(VOWELS);
    made.add(rnd() < 0.45 ? w + pick(SUFFIXES) : w);
  }
  return [...FUNCTION_WORDS, ...COURSE_WORDS, ...made];
}

// Zipf–Mandelbrot: rank r drawn with weight 1 / (r + 2.7).
function zipf(words: string[], rnd: () => number): () => string {
  const cumulative: number[] = [];
  let sum = 0;
  for (let r = 0; r < words.length; r++) cumulative.push((sum += 1 / (r + 2.7)));
  return () => {
    const x = rnd() * sum;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return words[lo]!;
  };
}

async function seed(tx: Tx): Promise<void> {
  const rnd = random(42);
  const word = zipf(vocabulary(rnd), rnd);
  const text = (n: number) => Array.from({ length: n }, word).join(" ");
  await insertSearchDocuments(
    (sql, params) => tx.execute(sql, params, "run"),
    courses,
    () => {
      const title = text(6);
      return { title: title[0]!.toUpperCase() + title.slice(1), description: text(150) };
    },
  );
}

async function main(): Promise<void> {
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}`, entities: readModelEntities });
  try {
    const tx = txOf(db);
    const projection = search();
    await projection.setup!(tx);
    let t = performance.now();
    await seed(tx);
    const buildMs = performance.now() - t;
    await db.execute("pragma wal_checkpoint(truncate)", [], "all");
    const bytes = (await stat(tmp.path)).size;
    const ftsPages = (await db.execute<{ n: number }>(`select sum(pgsize) as n from dbstat where name like '${SEARCH_FTS_TABLE}%'`, [], "get").catch(() => ({ n: NaN }))).n;

    // An index of the previous definition, as an existing deployment has it: what `setup` does with it.
    await db.execute(`drop table ${SEARCH_FTS_TABLE}`, [], "run");
    await db.execute(`create virtual table ${SEARCH_FTS_TABLE} using fts5(title, description, tokenize = 'unicode61 remove_diacritics 2')`, [], "run");
    await db.execute(`insert into ${SEARCH_FTS_TABLE} (rowid, title, description) select doc_id, title, description from search_documents where status = 'active'`, [], "run");
    t = performance.now();
    await projection.setup!(tx);
    const upgradeMs = performance.now() - t;
    const definition = (await db.execute<{ sql: string }>("select sql from sqlite_master where name = ?", [SEARCH_FTS_TABLE], "get")).sql;

    const queries: Tx = { dialect: "sqlite", execute: (sql, params = [], method = "all") => db.query(sql, params, method === "run" ? "all" : method) };
    const find = searchCatalog(queries);
    const rows: (string | number)[][] = [];
    for (const [kind, texts] of [["worst", WORST], ["typical", TYPICAL]] as const) {
      for (const text of texts) {
        await find({ text }); // warm: the statement prepared, the thread started, the pages cached
        const times: number[] = [];
        let found = 0;
        for (let r = 0; r < ROUNDS; r++) {
          const start = performance.now();
          found = (await find({ text })).items.length;
          times.push(performance.now() - start);
        }
        const shown = (s: string) => (s.length > 48 ? `${s.slice(0, 45)}…` : s);
        rows.push([kind, `"${shown(text)}"`, shown(ftsQueryOf(text) ?? "(none)"), found, median(times), Math.max(...times)]);
      }
    }
    console.log(`index: ${definition}`);
    console.log(`built by the triggers while inserting ${courses.toLocaleString("en")} courses: ${(buildMs / 1000).toFixed(1)} s; file ${(bytes / 2 ** 20).toFixed(0)} MiB, of which the FTS5 tables ${(ftsPages / 2 ** 20).toFixed(0)} MiB`);
    console.log(`setup on a database with the previous index definition: ${(upgradeMs / 1000).toFixed(2)} s`);
    console.log(table(`SearchCatalog over ${courses.toLocaleString("en")} courses, query thread, ${ROUNDS} queries each (limit 20)`, ["", "text", "FTS5 MATCH", "results", "wall p50 ms", "wall max ms"], rows));
  } finally {
    await db.close();
    await tmp.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
