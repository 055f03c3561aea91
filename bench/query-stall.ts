/**
 * `npm run bench:queries [-- COURSES]`: what a read model's query costs the event loop. A SQLite file with
 * COURSES active courses in the search projection (default 50,000; titles and descriptions drawn from twenty
 * words), then SearchCatalog — which ranks every course that matches — for a one-letter word ("a", a prefix
 * until SearchCatalog matched such words whole), a common word, two words and a word that matches nothing,
 * five times each, a timer tick between queries: on the read connection, which runs on the main thread (how
 * queries ran until 2026-12-05), and through Database.query, on the query thread. Prints each query's wall
 * time (median and longest) and the event loop's longest stall (its delay at 1 ms resolution). Writes nothing
 * to bench/results. In-process, no NATS.
 */
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { txOf, type Tx } from "../src/consumers/index.js";
import { openDatabase, type Database } from "../src/persistence/index.js";
import { readModelEntities } from "../src/projections/index.js";
import { search, searchCatalog } from "../src/projections/search.js";
import { tempSqlitePath } from "../test/support/tmp.js";
import { median } from "./percentiles.js";
import { table } from "./table.js";
import { insertSearchDocuments } from "./search-documents.js";

const courses = Number(process.argv[2] ?? 50_000);
const QUERIES = ["a", "python", "introduction advanced", "zzz"];
const ROUNDS = 5;
const WORDS = ["introduction", "advanced", "python", "javascript", "data", "science", "machine", "learning", "design", "music", "guitar", "cooking", "finance", "marketing", "a", "and", "the", "of", "for", "beginners"];

const words = (seed: number, n: number) => Array.from({ length: n }, (_, j) => WORDS[(seed * 7 + j * 13) % WORDS.length]).join(" ");

async function seed(db: Database): Promise<void> {
  await search().setup!(txOf(db));
  await insertSearchDocuments((sql, params) => db.execute(sql, params, "run"), courses, (j) => ({ title: `Course ${words(j, 5)} ${j}`, description: words(j + 3, 40) }));
}

async function main(): Promise<void> {
  const tmp = await tempSqlitePath();
  const db = await openDatabase({ url: `sqlite:${tmp.path}`, entities: readModelEntities });
  try {
    await seed(db);
    const ways: [string, Tx][] = [
      ["read connection, main thread (before)", { dialect: "sqlite", execute: (sql, params = [], method = "all") => db.read(sql, params, method) }],
      ["Database.query, query thread (now)", { dialect: "sqlite", execute: (sql, params = [], method = "all") => (method === "run" ? Promise.reject(new Error("read only")) : db.query(sql, params, method)) }],
    ];
    const rows: (string | number)[][] = [];
    for (const text of QUERIES) {
      for (const [how, tx] of ways) {
        const search = searchCatalog(tx);
        await search({ text }); // warm: statements prepared, the thread started
        const h = monitorEventLoopDelay({ resolution: 1 });
        h.enable();
        await new Promise((r) => setTimeout(r, 5));
        const times: number[] = [];
        let found = 0;
        for (let r = 0; r < ROUNDS; r++) {
          const t = performance.now();
          found = (await search({ text })).items.length;
          times.push(performance.now() - t);
          await new Promise((r) => setTimeout(r, 2));
        }
        h.disable();
        rows.push([`"${text}"`, how, found, median(times).toFixed(1), Math.max(...times).toFixed(1), (h.max / 1e6).toFixed(1)]);
      }
    }
    console.log(table(`SearchCatalog over ${courses.toLocaleString("en")} courses, ${ROUNDS} queries each (limit 20)`, ["text", "where it ran", "results", "wall p50 ms", "wall max ms", "event loop's longest stall ms"], rows));
  } finally {
    await db.close();
    await tmp.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
