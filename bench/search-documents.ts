/** Courses for the search benches: `search_documents` rows, 500 to a statement (the FTS5 index follows by trigger). */

/** Inserts `count` active courses `c-0`…, their title and description from `doc`, through `run`. */
export async function insertSearchDocuments(run: (sql: string, params: unknown[]) => Promise<unknown>, count: number, doc: (i: number) => { title: string; description: string }): Promise<void> {
  for (let i = 0; i < count; i += 500) {
    const values: unknown[] = [];
    const rows: string[] = [];
    for (let j = i; j < Math.min(count, i + 500); j++) {
      const { title, description } = doc(j);
      values.push(`c-${j}`, title, description, 1000, "EUR", "i-1", "p-1", "active", 1, "2026-01-01T00:00:00.000Z");
      rows.push("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    await run(`insert into search_documents (course_id, title, description, price_amount, price_currency, instructor_id, policy_id, status, version, updated_on) values ${rows.join(", ")}`, values);
  }
}
