/** `certificates`: a certificate for every completed course, and ListCertificates (CONTRACT.md §4, §5). */
import { EntitySchema } from "@mikro-orm/core";
import { Consumers, type QueryResult } from "../../contracts/index.js";
import type { Subscriber, Tx } from "../consumers/index.js";
import { typedEvent } from "./typed-event.js";
import { userList, type UserList } from "./bounded-rows.js";

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
    // One certificate per access record, its id derived from it: `on conflict do nothing`.
    idempotentWithoutInbox: true,
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

/** A learner's certificates, oldest first, ties by course. */
const CERTIFICATES: UserList<CertificateRow> = {
  table: "certificates",
  id: "certificate_id",
  order: "order by issued_on, course_id",
  after: (c) => ({ where: "(issued_on > ? or (issued_on = ? and course_id > ?))", params: [c.issued_on, c.issued_on, c.course_id] }),
};

/** ListCertificates: a learner's certificates, oldest first — whole, or a page when `after` or `limit` is given ({@link userList}). */
export function listCertificates(tx: Tx) {
  return async (body: { user_id: string; after?: string | undefined; limit?: number | undefined }): Promise<QueryResult<"ListCertificates">> => {
    const { rows, next } = await userList(tx, CERTIFICATES, body, `the certificates of ${body.user_id}`);
    const items = rows.map(({ certificate_id, user_id, course_id, access_id, issued_on }) => ({ certificate_id, user_id, course_id, access_id, issued_on }));
    return next === undefined ? { items } : { items, next_after: next };
  };
}
