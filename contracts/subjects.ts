/** Contexts, streams, consumers and the subject builders of the contract (CONTRACT.md §2–§5). */
import { ID_PATTERN } from "./values.js";
import { NerveError } from "./errors.js";

/** The five bounded contexts that own aggregates, with their aggregate type and stream. */
export const Contexts = {
  users: { aggregate: "User", stream: "EVENTS_USERS" },
  courses: { aggregate: "Course", stream: "EVENTS_COURSES" },
  policies: { aggregate: "RefundPolicy", stream: "EVENTS_POLICIES" },
  orders: { aggregate: "Order", stream: "EVENTS_ORDERS" },
  access: { aggregate: "AccessRecord", stream: "EVENTS_ACCESS" },
} as const;

/** A context token: `users`, `courses`, `policies`, `orders`, `access`. */
export type Context = keyof typeof Contexts;
/** An aggregate type name: `User`, `Course`, `RefundPolicy`, `Order`, `AccessRecord`. */
export type AggregateType = (typeof Contexts)[Context]["aggregate"];

/** All context tokens. */
export const CONTEXTS = Object.keys(Contexts) as Context[];

/** Aggregate type names, as a const object. */
export const AggregateTypes = {
  User: "User",
  Course: "Course",
  RefundPolicy: "RefundPolicy",
  Order: "Order",
  AccessRecord: "AccessRecord",
} as const satisfies Record<AggregateType, AggregateType>;

/** The context that owns an aggregate type. */
export function contextOf(aggregate: AggregateType): Context {
  for (const c of CONTEXTS) if (Contexts[c].aggregate === aggregate) return c;
  throw new NerveError("internal", `unknown aggregate type ${aggregate}`);
}

/** JetStream stream names and their subjects. */
export const Streams = Object.fromEntries(
  CONTEXTS.map((c) => [Contexts[c].stream, { name: Contexts[c].stream, subjects: `events.${c}.>`, context: c }]),
) as Record<(typeof Contexts)[Context]["stream"], { name: string; subjects: string; context: Context }>;

/** Durable consumer names, one per subscribing context. */
export const Consumers = {
  Analytics: "analytics",
  Notifications: "notifications",
  Security: "security",
  Catalog: "catalog",
  Search: "search",
  PolicySync: "policy-sync",
  AccessGrants: "access-grants",
  Certificates: "certificates",
  Audit: "audit",
  /** Not a §4 flow: the read model of GetLearnerProgress (§5). Listed so that NATS permissions and external consumers keep off it too. */
  LearnerProgress: "learner-progress",
} as const;
/** A durable consumer name. */
export type ConsumerName = (typeof Consumers)[keyof typeof Consumers];

/** The NATS service name of the command and query API. */
export const SERVICE_NAME = "nerve";

/** Message header names of the contract. */
export const Headers = {
  MsgId: "Nats-Msg-Id",
  ContentType: "Content-Type",
  EventType: "Event-Type",
  EventVersion: "Event-Version",
  IdempotencyKey: "Idempotency-Key",
  CorrelationId: "Correlation-Id",
  CausationId: "Causation-Id",
  /** W3C trace context (CONTRACT.md §2, §3). */
  TraceParent: "traceparent",
  TraceState: "tracestate",
  ServiceErrorCode: "Nats-Service-Error-Code",
  ServiceError: "Nats-Service-Error",
} as const;

/** Throws `invalid_request` unless `id` is safe as one subject token. */
export function assertSafeId(id: string, what = "id"): string {
  if (typeof id !== "string" || !ID_PATTERN.test(id)) {
    throw new NerveError("invalid_request", `${what} must match ^[A-Za-z0-9_-]{1,64}$`, { details: { [what]: String(id).slice(0, 80) } });
  }
  return id;
}

const NAME = /^[A-Z][A-Za-z0-9]{0,63}$/;
function assertName(name: string, what: string): string {
  if (!NAME.test(name)) throw new NerveError("invalid_request", `${what} must be a PascalCase name`, { details: { [what]: name } });
  return name;
}

/** `events.<context>.<event_type>.<aggregate_id>` */
export function eventSubject(context: Context, eventType: string, aggregateId: string): string {
  return `events.${context}.${assertName(eventType, "event_type")}.${assertSafeId(aggregateId, "aggregate_id")}`;
}

/**
 * The event type an event subject names (`events.<context>.<event_type>.<aggregate_id>`), or undefined
 * when the subject is not one. A consumer skips the events it does not handle by it, without decoding
 * their headers (the subject is parsed already; the header block is not).
 */
export function eventTypeOfSubject(subject: string): string | undefined {
  if (!subject.startsWith("events.")) return undefined;
  const b = subject.indexOf(".", 7);
  const c = b < 0 ? -1 : subject.indexOf(".", b + 1);
  if (b <= 7 || c < 0 || c === b + 1 || subject.indexOf(".", c + 1) >= 0 || c === subject.length - 1) return undefined;
  return subject.slice(b + 1, c);
}

/** `cmd.<context>.<CommandType>.<aggregate_id>` */
export function commandSubject(context: Context, commandType: string, aggregateId: string): string {
  return `cmd.${context}.${assertName(commandType, "command_type")}.${assertSafeId(aggregateId, "aggregate_id")}`;
}

/** `query.<context>.<QueryType>` */
export function querySubject(context: string, queryType: string): string {
  if (!/^[a-z]+$/.test(context)) throw new NerveError("invalid_request", "query context must be lower-case letters");
  return `query.${context}.${assertName(queryType, "query_type")}`;
}

/** Splits a command subject into its parts, or returns undefined when it is not one. */
export function parseCommandSubject(subject: string): { context: string; commandType: string; aggregateId: string } | undefined {
  const parts = subject.split(".");
  if (parts.length !== 4 || parts[0] !== "cmd") return undefined;
  return { context: parts[1]!, commandType: parts[2]!, aggregateId: parts[3]! };
}
