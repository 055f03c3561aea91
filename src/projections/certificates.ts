/** `certificates`: a certificate for every completed course, and ListCertificates (CONTRACT.md §4, §5). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, LIST_PAGE, type QueryResult } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import { typedEvent } from "./typed-event.js";
import { boundedRows, pageOfRows, unknownCursor } from "./bounded-rows.js";

/** One certificate. */
export interface CertificateRow {
  certificate_id: string;
  user_id: string;
  course_id: string;
  access_id: string;
  issued_on: string;
  event_id: string;
}

/** Certificate table. */
export const CertificateSchema = new EntitySchema<CertificateRow>({
  name: "Certificate",
  tableName: "certificates",
  properties: {
    certificate_id: { type: "string", length: 40, primary: true, fieldName: "certificate_id" },
    user_id: { type: "string", length: 64, index: true, fieldName: "user_id" },
    course_id: { type: "string", length: 64, fieldName: "course_id" },
    access_id: { type: "string", length: 36, fieldName: "access_id" },
    issued_on: { type: "string", length: 32, fieldName: "issued_on" },
    event_id: { type: "string", length: 36, fieldName: "event_id" },
  },
});

/** A certificate id: one per access record, i.e. per learner and course, since a course is completed once. */
export const certificateIdOf = (accessId: string): string => `crt_${accessId.slice("acc_".length)}`;

/** The certificates projection: CourseCompleted → a certificate issued when the course was completed. */
export function certificates(): Subscriber {
  return {
    name: Consumers.Certificates,
    handles: { access: ["CourseCompleted"] },
    entities: [CertificateSchema],
    // Each event is one insert or guarded update, whatever the read model holds.
    writesOnly: true,
    async apply(raw, tx) {
      const e = typedEvent(raw);
      if (e.event_type !== "CourseCompleted") return;
      const { access_id, user_id, course_id } = e.payload;
      await tx.execute(
        "insert into certificates (certificate_id, user_id, course_id, access_id, issued_on, event_id) values (?, ?, ?, ?, ?, ?) on conflict (certificate_id) do nothing",
        [certificateIdOf(access_id), user_id, course_id, access_id, e.occurred_on, e.event_id],
        "run",
      );
    },
    async reset(tx) {
      await tx.execute("delete from certificates", [], "run");
    },
  };
}

/** A learner's certificates, oldest first: the order every page follows too. */
const OLDEST_FIRST = "order by issued_on, course_id";

/**
 * ListCertificates: a learner's certificates, oldest first — whole (up to 10,000), or a page when `after`
 * or `limit` is given (Nerve's addition to CONTRACT.md §5), with `next_after` for the next page.
 */
export function listCertificates(tx: Tx) {
  return async (body: { user_id: string; after?: string | undefined; limit?: number | undefined }): Promise<QueryResult<"ListCertificates">> => {
    const what = `the certificates of ${body.user_id}`;
    const paged = body.after !== undefined || body.limit !== undefined;
    let rows: CertificateRow[];
    let next: string | null = null;
    if (!paged) rows = await boundedRows<CertificateRow>(tx, `select * from certificates where user_id = ? ${OLDEST_FIRST}`, [body.user_id], what);
    else {
      let after: CertificateRow | undefined;
      if (body.after !== undefined) {
        after = await tx.execute<CertificateRow | undefined>("select * from certificates where user_id = ? and certificate_id = ?", [body.user_id, body.after], "get");
        if (!after) throw unknownCursor(body.after, what);
      }
      const limit = body.limit ?? LIST_PAGE.defaultLimit;
      const page = after
        ? await pageOfRows<CertificateRow>(tx, `select * from certificates where user_id = ? and (issued_on > ? or (issued_on = ? and course_id > ?)) ${OLDEST_FIRST}`, [body.user_id, after.issued_on, after.issued_on, after.course_id], limit, (r) => r.certificate_id)
        : await pageOfRows<CertificateRow>(tx, `select * from certificates where user_id = ? ${OLDEST_FIRST}`, [body.user_id], limit, (r) => r.certificate_id);
      rows = page.rows;
      next = page.next;
    }
    const items = rows.map(({ certificate_id, user_id, course_id, access_id, issued_on }) => ({ certificate_id, user_id, course_id, access_id, issued_on }));
    return paged ? { items, next_after: next } : { items };
  };
}
