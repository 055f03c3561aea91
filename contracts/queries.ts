/** Queries of the contract (CONTRACT.md §5): subject parts, body and result schemas. */
import { z } from "zod";
import { EnvelopeBase } from "./events.js";
import { CourseIds, Description, Name, Percent, PolicyType, RefundPeriodDays } from "./payloads.js";
import { AccessId, Email, HttpsUrl, Id, Locale, Money, TextInput, TimeZone, Timestamp } from "./values.js";

const version = z.number().int().min(0);

/**
 * History in pages (`after_version`, `limit`): most events per page, and most bytes of them as JSON (a page
 * must fit in one NATS reply, 1 MiB by default); without them the whole history is answered, up to
 * `maxUnpaged` events and what one reply carries — a longer one is refused, naming the pages.
 */
export const HISTORY_PAGE = { defaultLimit: 1_000, maxLimit: 1_000, maxBytes: 512 * 1024, maxUnpaged: 10_000 } as const;

/** A user's full profile, every field present (`null` when unset). */
export const Profile = z.strictObject({
  display_name: z.string().nullable(),
  bio: z.string().nullable(),
  avatar_url: HttpsUrl.nullable(),
  locale: Locale.nullable(),
  timezone: TimeZone.nullable(),
});

/** The result of GetUser. */
export const UserView = z.strictObject({ user_id: Id, email: Email, name: Name, profile_data: Profile, version });
/** The result of GetPolicy. */
export const PolicyView = z.strictObject({
  policy_id: Id,
  name: Name,
  type: PolicyType,
  refund_period_days: RefundPeriodDays,
  max_progress_percent: Percent.nullable(),
  status: z.enum(["active", "deprecated"]),
  replacement_policy_id: Id.nullable(),
  version,
});
/** The result of GetCourse. */
export const CourseView = z.strictObject({
  course_id: Id,
  title: Name,
  description: Description,
  price: Money.nullable(),
  instructor_id: Id,
  policy_id: Id,
  status: z.enum(["active", "deprecated"]),
  version,
});
/** The result of GetOrder. */
export const OrderView = z.strictObject({
  order_id: Id,
  user_id: Id,
  course_ids: CourseIds,
  total_amount: Money,
  status: z.enum(["placed", "paid", "refunded", "cancelled"]),
  payment_id: z.string().nullable(),
  version,
});
/** The result of GetAccess. */
export const AccessView = z.strictObject({
  access_id: AccessId,
  user_id: Id,
  course_id: Id,
  status: z.enum(["active", "revoked", "expired"]),
  progress: Percent,
  completed: z.boolean(),
  expires_at: Timestamp.nullable(),
  /** The order whose payment granted the access; null when none did or it is not known (version-1 grants). */
  order_id: Id.nullable(),
  version,
});
/** A catalog entry as SearchCatalog returns it. */
export const CatalogItem = z.strictObject({
  course_id: Id,
  title: Name,
  description: Description,
  price: Money.nullable(),
  instructor_id: Id,
  policy_id: Id,
});
/** A notification as ListNotifications returns it. */
export const NotificationView = z.strictObject({
  notification_id: z.string(),
  user_id: Id,
  kind: z.string(),
  to: z.string().nullable(),
  message: z.string(),
  event_id: z.string(),
  created_on: Timestamp,
});
/** A certificate as ListCertificates returns it. */
export const CertificateView = z.strictObject({
  certificate_id: z.string(),
  user_id: Id,
  course_id: Id,
  access_id: AccessId,
  issued_on: Timestamp,
});

const items = <T extends z.ZodType>(item: T) => z.strictObject({ items: z.array(item) });

/**
 * A list in pages (ListNotifications, ListCertificates): `after` is the id of the last item of the page
 * before (omitted: from the first), `limit` the most items of this page (default {@link LIST_PAGE}'s).
 */
export const LIST_PAGE = { defaultLimit: 100, maxLimit: 1_000 } as const;
const listPage = { after: Id.optional(), limit: z.number().int().min(1).max(LIST_PAGE.maxLimit).optional() };
// next_after only when a page was asked for: the `after` of the next page, null after the last.
const pagedItems = <T extends z.ZodType>(item: T) => z.strictObject({ items: z.array(item), next_after: Id.nullable().optional() });

/** Every query: its context, body and result. */
export const QueryDefinitions = {
  GetUser: { context: "users", body: z.strictObject({ user_id: Id }), result: UserView },
  GetPolicy: { context: "policies", body: z.strictObject({ policy_id: Id }), result: PolicyView },
  GetCourse: { context: "courses", body: z.strictObject({ course_id: Id }), result: CourseView },
  SearchCatalog: {
    context: "courses",
    body: z.strictObject({ text: TextInput(200), limit: z.number().int().min(1).max(100).optional() }),
    result: items(CatalogItem),
  },
  GetOrder: { context: "orders", body: z.strictObject({ order_id: Id }), result: OrderView },
  GetAccess: { context: "access", body: z.strictObject({ access_id: AccessId }), result: AccessView },
  GetLearnerProgress: { context: "access", body: z.strictObject({ user_id: Id }), result: items(AccessView) },
  CourseStats: {
    context: "analytics",
    body: z.strictObject({ course_id: Id }),
    result: z.strictObject({ course_id: Id, learners: z.number().int().min(0), completions: z.number().int().min(0), average_progress: z.number().min(0).max(100) }),
  },
  // after and limit (Nerve's addition to CONTRACT.md §5, as History's): a page of a list too long for one reply.
  ListNotifications: { context: "notifications", body: z.strictObject({ user_id: Id, ...listPage }), result: pagedItems(NotificationView) },
  ListCertificates: { context: "certificates", body: z.strictObject({ user_id: Id, ...listPage }), result: pagedItems(CertificateView) },
  History: {
    context: "audit",
    // after_version and limit (Nerve's addition to CONTRACT.md §5): a page of a history too long for one reply.
    body: z.strictObject({
      aggregate_type: z.enum(["User", "Course", "RefundPolicy", "Order", "AccessRecord"]),
      aggregate_id: Id,
      after_version: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
      limit: z.number().int().min(1).max(HISTORY_PAGE.maxLimit).optional(),
    }),
    // next_after_version only when a page was asked for: the after_version of the next page, null after the last.
    result: z.strictObject({ events: z.array(EnvelopeBase), next_after_version: z.number().int().min(1).nullable().optional() }),
  },
} as const;

/** A query type name. */
export type QueryType = keyof typeof QueryDefinitions;
/** The validated body of a query. */
export type QueryBody<T extends QueryType> = z.infer<(typeof QueryDefinitions)[T]["body"]>;
/** The result of a query. */
export type QueryResult<T extends QueryType> = z.infer<(typeof QueryDefinitions)[T]["result"]>;
/** All query types, in contract order. */
export const QUERY_TYPES = Object.keys(QueryDefinitions) as QueryType[];
