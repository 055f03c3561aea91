/**
 * The read models' lists without a page in the contract (ListNotifications, ListCertificates,
 * GetLearnerProgress) are read with a bound: up to MAX_ANSWER_ITEMS they answer whole; one more is refused
 * with a clear invalid_request, not pulled into memory to fail later as too large for one reply.
 */
import { describe, expect, it } from "vitest";
import { queryTxOf } from "../../src/consumers/index.js";
import type { Database } from "../../src/persistence/index.js";
import { MAX_ANSWER_ITEMS } from "../../src/projections/bounded-rows.js";
import { listCertificates } from "../../src/projections/certificates.js";
import { readModelEntities } from "../../src/projections/index.js";
import { getLearnerProgress } from "../../src/projections/learner-progress.js";
import { listNotifications } from "../../src/projections/notifications.js";
import { useSqliteDatabase } from "../support/index.js";

let db: Database;
const series = "with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)";

describe("read-model lists as one answer", () => {
  useSqliteDatabase((d) => (db = d), readModelEntities);

  it(`answers ${MAX_ANSWER_ITEMS} items whole and refuses one more, for each list`, async () => {
    for (const [user, n] of [["fits", MAX_ANSWER_ITEMS], ["over", MAX_ANSWER_ITEMS + 1]] as const) {
      await db.execute(`${series} insert into notifications (notification_id, user_id, kind, to_address, message, event_id, created_on) select ? || '-' || i, ?, 'welcome', 'a@example.com', 'hi', 'e-' || i, '2026-12-05T00:00:00.000Z' from n`, [n, user, user], "run");
      await db.execute(`${series} insert into certificates (certificate_id, user_id, course_id, access_id, issued_on, event_id) select ? || '-' || i, ?, 'c-' || i, 'a-' || i, '2026-12-05T00:00:00.000Z', 'e-' || i from n`, [n, user, user], "run");
      await db.execute(`${series} insert into learner_access (access_id, user_id, course_id, status, progress, completed, expires_at, order_id, version) select ? || '-' || i, ?, 'c-' || i, 'active', 0, 0, null, null, 1 from n`, [n, user, user], "run");
    }
    const tx = queryTxOf(db);
    const lists = [
      ["notifications", (u: string) => listNotifications(tx)({ user_id: u })],
      ["certificates", (u: string) => listCertificates(tx)({ user_id: u })],
      ["access records", (u: string) => getLearnerProgress(tx)({ user_id: u })],
    ] as const;
    for (const [what, list] of lists) {
      expect((await list("fits")).items, what).toHaveLength(MAX_ANSWER_ITEMS);
      await expect(list("over"), what).rejects.toMatchObject({ code: "invalid_request", message: `the ${what} of over holds more than ${MAX_ANSWER_ITEMS} items, more than one answer carries` });
    }
  }, 60_000);

  it("pages notifications and certificates (after, limit, next_after): every item once, in the whole list's order", async () => {
    // Ties on purpose: several notifications of one event and of one moment; several certificates of one moment.
    await db.execute(
      `${series} insert into notifications (notification_id, user_id, kind, to_address, message, event_id, created_on) select 'ntf-' || i, 'pager', 'welcome', 'a@example.com', 'hi', 'e-' || (i % 7), '2026-12-0' || (1 + i % 3) || 'T00:00:00.000Z' from n`,
      [250],
      "run",
    );
    await db.execute(`${series} insert into certificates (certificate_id, user_id, course_id, access_id, issued_on, event_id) select 'crt-' || i, 'pager', 'c-' || i, 'a-' || i, '2026-12-0' || (1 + i % 4) || 'T00:00:00.000Z', 'e-' || i from n`, [250], "run");
    const tx = queryTxOf(db);
    const lists = [
      ["notifications", listNotifications(tx), (i: { notification_id: string }) => i.notification_id],
      ["certificates", listCertificates(tx), (i: { certificate_id: string }) => i.certificate_id],
    ] as const;
    for (const [what, list, idOf] of lists) {
      const whole = (await (list as any)({ user_id: "pager" })).items.map(idOf);
      expect(whole, what).toHaveLength(250);
      const paged: string[] = [];
      let after: string | undefined;
      let pages = 0;
      for (;;) {
        const page = await (list as any)({ user_id: "pager", limit: 40, ...(after ? { after } : {}) });
        paged.push(...page.items.map(idOf));
        pages++;
        if (page.next_after === null) break;
        expect(page.next_after, what).toBe(idOf(page.items.at(-1)));
        after = page.next_after;
      }
      expect(paged, what).toEqual(whole);
      expect(pages, what).toBe(7);
      // The default page, and a cursor that is no item of the list.
      const first = await (list as any)({ user_id: "pager", limit: undefined, after: undefined });
      expect(first.next_after, what).toBeUndefined(); // neither given: the whole list, as the contract has it
      expect((await (list as any)({ user_id: "pager", after: whole[0] })).items.map(idOf), what).toEqual(whole.slice(1, 101));
      await expect((list as any)({ user_id: "pager", after: "nope" }), what).rejects.toMatchObject({ code: "invalid_request", message: `after: nope is not an item of the ${what} of pager` });
      await expect((list as any)({ user_id: "someone-else", after: whole[0] }), what).rejects.toMatchObject({ code: "invalid_request" });
    }
  });
});
