/** One valid sample per event payload, command body, query body and query result, for table-driven tests. */
import {
  Contexts,
  deriveAccessId,
  EventContexts,
  EventVersions,
  type CommandType,
  type EventEnvelope,
  type EventType,
  type PayloadOf,
  type QueryType,
} from "../../contracts/index.js";

/** A valid lower-case UUIDv7. */
export const EVENT_ID = "0192f0c5-7b1e-7c3a-8f2d-1a2b3c4d5e6f";
/** A valid contract timestamp. */
export const NOW = "2026-11-26T23:20:39.123Z";
/** The access id of the sample learner and course. */
export const ACCESS_ID = deriveAccessId("user-42", "course_7");

const access = { access_id: ACCESS_ID, user_id: "user-42", course_id: "course_7" };
const usd = (amount: number) => ({ amount, currency: "USD" });

/** Valid current-version payloads; the mapped type makes the compiler insist on all 19. */
export const payloadSamples: { [T in EventType]: PayloadOf<T> } = {
  UserRegistered: { user_id: "user-42", email: "ada@example.com", name: "Ada Lovelace" },
  UserProfileUpdated: { user_id: "user-42", profile_data: { display_name: "Ada", bio: null, locale: "en-GB" } },
  UserEmailChanged: { user_id: "user-42", old_email: "ada@example.com", new_email: "ada@lovelace.org" },
  CourseCreated: { course_id: "course_7", title: "Analytical Engines", instructor_id: "user-1", policy_id: "pol-std" },
  CourseUpdated: { course_id: "course_7", title: "Analytical Engines", description: "", price: usd(4900) },
  CourseDeprecated: { course_id: "course_7", title: "Analytical Engines" },
  CoursePolicyChanged: { course_id: "course_7", old_policy_id: "pol-std", new_policy_id: "pol-cond" },
  PolicyCreated: { policy_id: "pol-cond", name: "Conditional", type: "conditional", refund_period_days: 14, max_progress_percent: 30 },
  PolicyUpdated: { policy_id: "pol-cond", new_conditions: { refund_period_days: 30 } },
  PolicyDeprecated: { policy_id: "pol-cond", name: "Conditional", replacement_policy_id: null },
  OrderPlaced: { order_id: "ord-1", user_id: "user-42", course_ids: ["course_7", "course_8"], total_amount: usd(9800) },
  OrderPaid: { order_id: "ord-1", user_id: "user-42", course_ids: ["course_7"], payment_id: "pay_123" },
  OrderRefunded: { order_id: "ord-1", user_id: "user-42", course_ids: ["course_7"], refund_reason: "changed my mind" },
  OrderCancelled: { order_id: "ord-1", user_id: "user-42" },
  CourseAccessGranted: { ...access, expires_at: null, order_id: "ord-1" },
  AccessRevoked: { ...access, reason: "order_refunded" },
  AccessExpired: { ...access, expired_at: NOW },
  ProgressUpdated: { ...access, progress: 55 },
  CourseCompleted: { ...access },
};

// The payload field that names the aggregate, per context.
const aggregateKey = { users: "user_id", courses: "course_id", policies: "policy_id", orders: "order_id", access: "access_id" } as const;

/** A complete, valid envelope of an event type around its sample payload. */
export function envelopeSample<T extends EventType>(type: T): EventEnvelope<T> {
  const context = EventContexts[type];
  const payload = payloadSamples[type];
  return {
    event_id: EVENT_ID,
    event_type: type,
    event_version: EventVersions[type],
    occurred_on: NOW,
    aggregate_type: Contexts[context].aggregate,
    aggregate_id: (payload as Record<string, string>)[aggregateKey[context]]!,
    aggregate_version: 3,
    correlation_id: "corr-1",
    causation_id: "0192f0c5-7b1e-7c3a-8f2d-000000000001",
    payload,
  } as EventEnvelope<T>;
}

/** A valid body and a body the schema must refuse, per command type. */
export const commandSamples: Record<CommandType, { valid: unknown; invalid: unknown }> = {
  RegisterUser: { valid: { email: "Ada@Example.com", name: "Ada" }, invalid: { email: "not-an-email", name: "Ada" } },
  UpdateUserProfile: { valid: { profile_data: { timezone: "Europe/London" } }, invalid: { profile_data: {} } },
  ChangeUserEmail: { valid: { new_email: "ada@lovelace.org" }, invalid: { new_email: 42 } },
  CreatePolicy: { valid: { name: "Standard", type: "standard", refund_period_days: 30 }, invalid: { name: "Standard", type: "partial", refund_period_days: 30 } },
  UpdatePolicy: { valid: { new_conditions: { max_progress_percent: 20 } }, invalid: { new_conditions: {} } },
  DeprecatePolicy: { valid: { replacement_policy_id: "pol-std" }, invalid: { replacement_policy_id: "pol.std" } },
  CreateCourse: {
    valid: { title: "Engines", instructor_id: "user-1", policy_id: "pol-std", price: usd(4900) },
    invalid: { title: "Engines", instructor_id: "user-1" },
  },
  UpdateCourse: { valid: { description: "Gears and cards" }, invalid: {} },
  DeprecateCourse: { valid: {}, invalid: { reason: "old" } },
  ChangeCoursePolicy: { valid: { new_policy_id: "pol-cond" }, invalid: { new_policy_id: "" } },
  PlaceOrder: { valid: { user_id: "user-42", course_ids: ["course_7"] }, invalid: { user_id: "user-42", course_ids: ["course_7", "course_7"] } },
  MarkOrderPaid: { valid: { payment_id: "pay_123" }, invalid: { payment_id: "   " } },
  RefundOrder: { valid: { refund_reason: "changed my mind" }, invalid: { refund_reason: "x".repeat(501) } },
  CancelOrder: { valid: {}, invalid: { user_id: "user-42" } },
  GrantCourseAccess: {
    valid: { user_id: "user-42", course_id: "course_7", expires_at: NOW, order_id: "ord-1" },
    invalid: { user_id: "user-42", course_id: "course_7", order_id: "ord.1" },
  },
  RevokeCourseAccess: { valid: { reason: "order_refunded" }, invalid: { reason: "" } },
  UpdateProgress: { valid: { progress: 100 }, invalid: { progress: 101 } },
};

const accessView = { ...access, status: "active", progress: 55, completed: false, expires_at: null, order_id: "ord-1", version: 2 };

/** A valid body, a body the schema must refuse, and a valid result, per query type. */
export const querySamples: Record<QueryType, { valid: unknown; invalid: unknown; result: unknown }> = {
  GetUser: {
    valid: { user_id: "user-42" },
    invalid: { user_id: "user.42" },
    result: {
      user_id: "user-42",
      email: "ada@example.com",
      name: "Ada",
      profile_data: { display_name: null, bio: null, avatar_url: "https://example.com/a.png", locale: "en-GB", timezone: "Europe/London" },
      version: 1,
    },
  },
  GetPolicy: {
    valid: { policy_id: "pol-std" },
    invalid: {},
    result: { policy_id: "pol-std", name: "Standard", type: "standard", refund_period_days: 30, max_progress_percent: null, status: "active", replacement_policy_id: null, version: 1 },
  },
  GetCourse: {
    valid: { course_id: "course_7" },
    invalid: { course_id: "*" },
    result: { course_id: "course_7", title: "Engines", description: "", price: null, instructor_id: "user-1", policy_id: "pol-std", status: "active", version: 1 },
  },
  SearchCatalog: {
    valid: { text: "engines", limit: 10 },
    invalid: { text: "engines", limit: 0 },
    result: { items: [{ course_id: "course_7", title: "Engines", description: "", price: usd(4900), instructor_id: "user-1", policy_id: "pol-std" }] },
  },
  GetOrder: {
    valid: { order_id: "ord-1" },
    invalid: { order_id: "ord-1", extra: true },
    result: { order_id: "ord-1", user_id: "user-42", course_ids: ["course_7"], total_amount: usd(4900), status: "paid", payment_id: "pay_123", version: 2 },
  },
  GetAccess: { valid: { access_id: ACCESS_ID }, invalid: { access_id: "acc_XYZ" }, result: accessView },
  GetLearnerProgress: { valid: { user_id: "user-42" }, invalid: { user_id: ">" }, result: { items: [accessView] } },
  CourseStats: { valid: { course_id: "course_7" }, invalid: { course_id: 7 }, result: { course_id: "course_7", learners: 2, completions: 1, average_progress: 77.5 } },
  ListNotifications: {
    valid: { user_id: "user-42" },
    invalid: { user_id: "a b" },
    result: {
      items: [{ notification_id: "n-1", user_id: "user-42", kind: "welcome", to: "ada@example.com", message: "Welcome", event_id: EVENT_ID, created_on: NOW }],
    },
  },
  ListCertificates: {
    valid: { user_id: "user-42" },
    invalid: { user_id: "" },
    result: { items: [{ certificate_id: "cert-1", user_id: "user-42", course_id: "course_7", access_id: ACCESS_ID, issued_on: NOW }] },
  },
  History: {
    valid: { aggregate_type: "Order", aggregate_id: "ord-1" },
    invalid: { aggregate_type: "Invoice", aggregate_id: "ord-1" },
    result: { events: [envelopeSample("OrderPlaced"), envelopeSample("OrderPaid")] },
  },
};
