/**
 * On PostgreSQL search_documents.doc_id is a serial (int4) column that only SQLite uses (its FTS5 rowid). A
 * course event that finds its document must not draw a doc_id: an `insert … on conflict do update` draws
 * one from the sequence even when it updates, so every course event (and every re-delivery, every replay)
 * used one, where only a creation did before; once the sequence reaches its end, the search projection
 * failed on every event, an update of a course it has included (found by a helper's review).
 */
import { expect, it } from "vitest";

import { envelope, readModelsFor } from "./fixtures.js";
import { postgresAvailable } from "../support/index.js";

const created = (id: string) => envelope("CourseCreated", id, 1, { course_id: id, title: "Quantum Basics", instructor_id: "i-1", policy_id: "p-1" });

it("PostgreSQL: an event of a course whose document exists draws no doc_id, and applies with the sequence at its end", async () => {
  if (!(await postgresAvailable())) return;
  const m = await readModelsFor(true);
  await m.handle("search", created("c-1"));
  const drawn = async () => Number((await m.tx.execute<{ n: string }>("select last_value as n from search_documents_doc_id_seq", [], "get")).n);
  const before = await drawn();
  await m.handle(
    "search",
    envelope("CourseUpdated", "c-1", 2, { course_id: "c-1", title: "Entanglement", description: "Bell pairs", price: null }),
    envelope("CoursePolicyChanged", "c-1", 3, { course_id: "c-1", old_policy_id: "p-1", new_policy_id: "p-2" }),
  );
  expect(await drawn()).toBe(before);
  // The sequence at its end (2^31 - 1, taken by the next course): what exists still takes its events.
  await m.tx.execute("alter sequence search_documents_doc_id_seq restart with 2147483647", [], "run");
  await m.handle("search", created("c-2"));
  expect(await m.handle("search", envelope("CourseDeprecated", "c-1", 4, { course_id: "c-1", title: "Entanglement" }))).toEqual(["handled"]);
  const row = await m.tx.execute<Record<string, unknown>>("select status, policy_id, title from search_documents where course_id = ?", ["c-1"], "get");
  expect(row).toMatchObject({ status: "deprecated", policy_id: "p-2", title: "Entanglement" });

});
