/**
 * fast-check arbitraries of the contract: one per value object (CONTRACT.md §1), and from them the valid
 * command bodies (§3), query bodies (§5), event payloads and envelopes (§2); plus hostile text, which
 * every schema must refuse. Lengths are the schemas' own: UTF-16 code units, as `string.length` counts.
 */
import fc from "fast-check";
import {
  COMMAND_TYPES,
  Contexts,
  deriveAccessId,
  isBlank,
  EVENT_TYPES,
  EventContexts,
  EventVersions,
  QUERY_TYPES,
  type CommandBody,
  type CommandType,
  type EventEnvelope,
  type EventType,
  type Money,
  type PayloadOf,
  type QueryBody,
  type QueryType,
} from "../../contracts/index.js";

const orNull = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(a, { nil: null });
const nonEmpty = <T extends object>(o: T): boolean => Object.keys(o).length > 0;

/** fc.record with plain objects only: bodies arrive as plain maps, never with a null prototype. */
export function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T>;
export function record<T, K extends keyof T>(model: { [P in keyof T]: fc.Arbitrary<T[P]> }, options: { requiredKeys: K[] }): fc.Arbitrary<Pick<T, K> & Partial<T>>;
export function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }, options?: { requiredKeys: (keyof T)[] }): fc.Arbitrary<unknown> {
  return fc.record(model, { ...options, noNullPrototype: true } as { requiredKeys: (keyof T)[]; noNullPrototype: true });
}

// ---------------------------------------------------------------------------------------------
// Value objects (§1)

const ID_CHARS = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"];

/** An aggregate id, `^[A-Za-z0-9_-]{1,64}$`; now and then exactly 64 long. */
export const id = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 9, arbitrary: fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 16 }) },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 64, maxLength: 64 }) },
  );

/** An access id, derived as the contract says from a (user, course) pair. */
export const accessId = (): fc.Arbitrary<string> => fc.tuple(id(), id()).map(([u, c]) => deriveAccessId(u, c));

/** An event id: a lower-case UUIDv7. */
export const eventId = (): fc.Arbitrary<string> => fc.uuid({ version: 7 });

/** A contract timestamp (ISO-8601 UTC with milliseconds and `Z`) in 2000..2099. */
export const timestamp = (): fc.Arbitrary<string> =>
  fc
    .date({ min: new Date("2000-01-01T00:00:00.000Z"), max: new Date("2099-12-31T23:59:59.999Z"), noInvalidDate: true })
    .map((d) => d.toISOString());

const UPPER = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZ"];

/** A currency code, `^[A-Z]{3}$`; mostly a few common ones, so that sums in one currency happen. */
export const currency = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom("EUR", "USD", "JPY") },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...UPPER), minLength: 3, maxLength: 3 }) },
  );

/** An amount in minor units: any safe non-negative integer, biased to small ones and to the edges. */
export const amount = (): fc.Arbitrary<number> => fc.oneof(fc.nat({ max: 1_000_000 }), fc.maxSafeNat());

/** Money: `{ amount, currency }`. */
export const money = (): fc.Arbitrary<Money> => record({ amount: amount(), currency: currency() });

const LOCAL_CHARS = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_'+-"];
const LABEL_START = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"];
const LETTERS = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"];

/** An e-mail address as a command may send it: any case (zod's practical address syntax, ≤ 254 chars, DNS labels). */
export const emailInput = (): fc.Arbitrary<string> => {
  const segment = fc.string({ unit: fc.constantFrom(...LOCAL_CHARS), minLength: 1, maxLength: 12 });
  const local = fc
    .tuple(fc.array(segment, { maxLength: 2 }), segment, fc.constantFrom(...LOCAL_CHARS.filter((c) => c !== "'")))
    .map(([dotted, last, end]) => [...dotted, last + end].join("."));
  const label = fc
    .tuple(fc.constantFrom(...LABEL_START), fc.string({ unit: fc.constantFrom(...LABEL_START, "-"), maxLength: 12 }))
    // A DNS label neither begins nor ends with a hyphen.
    .map(([a, b]) => (a + b).replace(/-+$/, ""));
  const domain = fc
    .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.string({ unit: fc.constantFrom(...LETTERS), minLength: 2, maxLength: 8 }))
    .map(([labels, tld]) => [...labels, tld].join("."));
  return fc.tuple(local, domain).map(([l, d]) => `${l}@${d}`);
};

/** An e-mail address as stored and published: lower-cased. */
export const email = (): fc.Arbitrary<string> => emailInput().map((e) => e.toLowerCase());

/** An https URL. */
export const httpsUrl = (): fc.Arbitrary<string> => fc.webUrl({ validSchemes: ["https"], withQueryParameters: true, withFragments: true });

/** A BCP 47 language tag (odd case included: tags are stored as sent). */
export const locale = (): fc.Arbitrary<string> =>
  fc.constantFrom("en", "en-GB", "EN-gb", "fr-CA", "de-DE-u-co-phonebk", "zh-Hant-TW", "sr-Latn-RS", "es-419", "ar-EG", "he-IL", "ja-JP-u-ca-japanese", "en-US-x-twain", "und");

/** An IANA time-zone name, any the runtime knows. */
export const timeZone = (): fc.Arbitrary<string> => fc.constantFrom("UTC", "Etc/GMT+5", ...Intl.supportedValuesOf("timeZone"));

// ---------------------------------------------------------------------------------------------
// Text (§1): valid Unicode without U+0000, kept exactly

/** Characters JavaScript's `trim()` removes: a text of only these is blank. */
export const WHITESPACE = [" ", "\t", "\n", "\r", "\v", "\f", "\u00A0", "\u1680", "\u2000", "\u200A", "\u2028", "\u2029", "\u202F", "\u205F", "\u3000", "\uFEFF"];

/** Hand-picked troublemakers, each valid contract text: stored and returned exactly. */
export const TRICKY_TEXT = [
  ...WHITESPACE,
  // invisible but not trimmed
  "\u0085", "\u180E", "\u200B", "\u200C", "\u200D", "\u2060", "\u00AD",
  // control characters other than NUL
  "\u0001", "\u0007", "\u0008", "\u001B", "\u001F", "\u007F", "\u0080", "\u009F",
  // bidirectional text and marks
  "\u200E", "\u200F", "\u202A", "\u202B", "\u202C", "\u202D", "\u202E", "\u2066", "\u2067", "\u2068", "\u2069", "\u061C", "שלום", "مرحبا",
  // combining marks, composed and decomposed forms, case-mapping oddities
  "\u0301", "e\u0301", "é", "a\u0308\u0304", "Z\u0351\u036B\u0343\u036A", "\u0338", "ß", "İ", "ﬁ", "Σ",
  // astral characters and emoji sequences
  "😀", "👩🏽‍💻", "🏳️‍🌈", "🇫🇷", "👨‍👩‍👧‍👦", "𝕏", "𠜎", "\u{1D11E}", "\u{E0001}", "\u{10FFFF}", "\u{1F3FB}",
  // specials and noncharacters
  "\uFFFD", "\uFFFE", "\uFFFF", "\uE000", "\uFDD0",
  // things that look like syntax somewhere
  "'", '"', "\\", "%", "%00", "\\u0000", "\\0", "<script>", "${x}", "'; DROP TABLE t; --", "..", "*", ">", ".", "␀",
];

const VISIBLE = ["x", "é", "字", "ש", "#", "0"];

/** One unit of text: a printable ASCII character, a grapheme, any code point but NUL, or a troublemaker. */
const textUnit = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }) },
    { weight: 3, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }) },
    { weight: 2, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }).map((c) => (c === "\u0000" ? "\u0001" : c)) },
    { weight: 3, arbitrary: fc.constantFrom(...TRICKY_TEXT) },
  );

// Joins units up to `max` code units, never splitting one (so never a surrogate pair).
function fit(units: readonly string[], max: number): string {
  let out = "";
  for (const u of units) if (out.length + u.length <= max) out += u;
  return out;
}

/**
 * Contract text of at most `max` code units, possibly empty or blank (a description, a bio): short ones,
 * ones wrapped in whitespace, and ones filled up to the limit.
 */
export function plainText(max: number, min = 0): fc.Arbitrary<string> {
  const short = fc.array(textUnit(), { maxLength: Math.min(max, 24) });
  const ws = fc.array(fc.constantFrom(...WHITESPACE), { minLength: 1, maxLength: 3 });
  const padded = fc.tuple(ws, fc.array(textUnit(), { maxLength: 12 }), ws).map(([a, b, c]) => [...a, ...b, ...c]);
  const full = fc.array(textUnit(), { minLength: 1, maxLength: 4 }).map((pattern) => {
    const times = Math.ceil(max / Math.max(1, pattern.join("").length)) + 1;
    return Array.from({ length: times }, () => pattern).flat();
  });
  const text = fc.oneof({ weight: 6, arbitrary: short }, { weight: 2, arbitrary: padded }, { weight: 1, arbitrary: full }).map((u) => fit(u, max));
  return min === 0 ? text : text.filter((s) => s.length >= min);
}

/** A short human text, `Text(max)`: 1..max code units, not blank, any other character kept exactly (ends too). */
export function contractText(max: number): fc.Arbitrary<string> {
  // A blank draw (isBlank: white space and invisible characters only) gets a visible character in front;
  // the slice cuts the end, which may split a pair of surrogates (a tag character's): refilled by fit.
  return fc.tuple(plainText(max), fc.constantFrom(...VISIBLE)).map(([s, v]) => (isBlank(s) ? fit([...(v + s)], max) : s));
}

/** A character no contract text may hold: U+0000, or a lone (high or low) surrogate. */
export const hostileChar = (): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constant("\u0000"),
    fc.integer({ min: 0xd800, max: 0xdbff }).map((c) => String.fromCharCode(c)),
    fc.integer({ min: 0xdc00, max: 0xdfff }).map((c) => String.fromCharCode(c)),
  );

/** Inserts `c` into `s` at `at` modulo the possible positions (0..length). */
export const insertAt = (s: string, c: string, at: number): string => {
  const pos = at % (s.length + 1);
  return s.slice(0, pos) + c + s.slice(pos);
};

/**
 * Text that is not contract text: otherwise fine text (≤ `max` code units in all) with a NUL or a lone
 * surrogate at any position, even inside a surrogate pair (which leaves both halves alone).
 */
export const hostileText = (max = 200): fc.Arbitrary<string> =>
  fc.tuple(plainText(max - 1), hostileChar(), fc.nat()).map(([s, c, at]) => insertAt(s, c, at));

// ---------------------------------------------------------------------------------------------
// Contract fields, as payloads.ts names them



/** A display name or title (`Name` = Text(200)). */
export const name = (): fc.Arbitrary<string> => contractText(200);
/** A course description: any text up to 10,000, may be empty or blank. */
export const description = (): fc.Arbitrary<string> => plainText(10_000);
/** A free-text reason (Text(500)). */
export const reason = (): fc.Arbitrary<string> => contractText(500);
/** A payment provider's reference (Text(128)). */
export const paymentId = (): fc.Arbitrary<string> => contractText(128);
/** A correlation or causation id: any text of 1..128. */
export const traceId = (): fc.Arbitrary<string> => plainText(128, 1);
/** A percentage 0..100. */
export const percent = (): fc.Arbitrary<number> => fc.integer({ min: 0, max: 100 });
/** Refund period days 0..365. */
export const refundPeriodDays = (): fc.Arbitrary<number> => fc.integer({ min: 0, max: 365 });
/** A refund policy type. */
export const policyType = () => fc.constantFrom("standard" as const, "conditional" as const, "no_refund" as const);
/** An order's course ids: 1..50 distinct ids; now and then all 50. */
export const courseIds = (): fc.Arbitrary<string[]> =>
  fc.oneof(
    { weight: 9, arbitrary: fc.uniqueArray(id(), { minLength: 1, maxLength: 50 }) },
    { weight: 1, arbitrary: fc.uniqueArray(id(), { minLength: 50, maxLength: 50 }) },
  );

/** A profile patch: one or more of the editable fields, `null` clearing one. */
export const profilePatch = () =>
  record(
    {
      display_name: orNull(contractText(100)),
      bio: orNull(plainText(2000)),
      avatar_url: orNull(httpsUrl()),
      locale: orNull(locale()),
      timezone: orNull(timeZone()),
    },
    { requiredKeys: [] },
  ).filter(nonEmpty);

/** Policy conditions to change: one or both. */
export const policyConditions = () =>
  record({ refund_period_days: refundPeriodDays(), max_progress_percent: percent() }, { requiredKeys: [] }).filter(nonEmpty);

// ---------------------------------------------------------------------------------------------
// Command bodies (§3), query bodies (§5), payloads and envelopes (§2)

const commandBodies: { [T in CommandType]: () => fc.Arbitrary<CommandBody<T>> } = {
  RegisterUser: () => record({ email: emailInput(), name: name() }),
  UpdateUserProfile: () => record({ profile_data: profilePatch() }),
  ChangeUserEmail: () => record({ new_email: emailInput() }),
  CreatePolicy: () =>
    record(
      { name: name(), type: policyType(), refund_period_days: refundPeriodDays(), max_progress_percent: percent() },
      { requiredKeys: ["name", "type", "refund_period_days"] },
    ),
  UpdatePolicy: () => record({ new_conditions: policyConditions() }),
  DeprecatePolicy: () => record({ replacement_policy_id: orNull(id()) }, { requiredKeys: [] }),
  CreateCourse: () =>
    record(
      { title: name(), instructor_id: id(), policy_id: id(), description: description(), price: orNull(money()) },
      { requiredKeys: ["title", "instructor_id", "policy_id"] },
    ),
  UpdateCourse: () => record({ title: name(), description: description(), price: orNull(money()) }, { requiredKeys: [] }).filter(nonEmpty),
  DeprecateCourse: () => fc.constant(null).map(() => ({})),
  ChangeCoursePolicy: () => record({ new_policy_id: id() }),
  PlaceOrder: () => record({ user_id: id(), course_ids: courseIds(), total_amount: money() }, { requiredKeys: ["user_id", "course_ids"] }),
  MarkOrderPaid: () => record({ payment_id: paymentId() }),
  RefundOrder: () => record({ refund_reason: reason() }),
  CancelOrder: () => fc.constant(null).map(() => ({})),
  GrantCourseAccess: () =>
    record({ user_id: id(), course_id: id(), expires_at: orNull(timestamp()), order_id: orNull(id()) }, { requiredKeys: ["user_id", "course_id"] }),
  RevokeCourseAccess: () => record({ reason: reason() }),
  UpdateProgress: () => record({ progress: percent() }),
};

/** A body its command's schema accepts unchanged (optional keys absent, never `undefined`). */
export function validCommandBody<T extends CommandType>(type: T): fc.Arbitrary<CommandBody<T>> {
  return (commandBodies[type] as () => fc.Arbitrary<CommandBody<T>>)();
}

/** Any command type with a valid body. */
export const validCommand = (): fc.Arbitrary<{ type: CommandType; body: CommandBody<CommandType> }> =>
  fc.oneof(...COMMAND_TYPES.map((type) => validCommandBody(type).map((body) => ({ type, body }))));

const queryBodies: { [T in QueryType]: () => fc.Arbitrary<QueryBody<T>> } = {
  GetUser: () => record({ user_id: id() }),
  GetPolicy: () => record({ policy_id: id() }),
  GetCourse: () => record({ course_id: id() }),
  SearchCatalog: () => record({ text: contractText(200), limit: fc.integer({ min: 1, max: 100 }) }, { requiredKeys: ["text"] }),
  GetOrder: () => record({ order_id: id() }),
  GetAccess: () => record({ access_id: accessId() }),
  GetLearnerProgress: () => record({ user_id: id() }),
  CourseStats: () => record({ course_id: id() }),
  ListNotifications: () => record({ user_id: id() }),
  ListCertificates: () => record({ user_id: id() }),
  History: () => record({ aggregate_type: fc.constantFrom(...Object.values(Contexts).map((c) => c.aggregate)), aggregate_id: id() }),
};

/** A body its query's schema accepts. */
export function validQueryBody<T extends QueryType>(type: T): fc.Arbitrary<QueryBody<T>> {
  return (queryBodies[type] as () => fc.Arbitrary<QueryBody<T>>)();
}

/** Any query type with a valid body. */
export const validQuery = (): fc.Arbitrary<{ type: QueryType; body: QueryBody<QueryType> }> =>
  fc.oneof(...QUERY_TYPES.map((type) => validQueryBody(type).map((body) => ({ type, body }))));

// The three ids of an access record, the access id derived from the other two.
const accessIds = () =>
  record({ user_id: id(), course_id: id() }).map(({ user_id, course_id }) => ({ access_id: deriveAccessId(user_id, course_id), user_id, course_id }));

const payloads: { [T in EventType]: () => fc.Arbitrary<PayloadOf<T>> } = {
  UserRegistered: () => record({ user_id: id(), email: email(), name: name() }),
  UserProfileUpdated: () => record({ user_id: id(), profile_data: profilePatch() }),
  UserEmailChanged: () => record({ user_id: id(), old_email: email(), new_email: email() }),
  CourseCreated: () => record({ course_id: id(), title: name(), instructor_id: id(), policy_id: id() }),
  CourseUpdated: () => record({ course_id: id(), title: name(), description: description(), price: orNull(money()) }),
  CourseDeprecated: () => record({ course_id: id(), title: name() }),
  CoursePolicyChanged: () => record({ course_id: id(), old_policy_id: id(), new_policy_id: id() }),
  PolicyCreated: () =>
    record(
      { policy_id: id(), name: name(), type: policyType(), refund_period_days: refundPeriodDays(), max_progress_percent: percent() },
      { requiredKeys: ["policy_id", "name", "type", "refund_period_days"] },
    ),
  PolicyUpdated: () => record({ policy_id: id(), new_conditions: policyConditions() }),
  PolicyDeprecated: () => record({ policy_id: id(), name: name(), replacement_policy_id: orNull(id()) }),
  OrderPlaced: () => record({ order_id: id(), user_id: id(), course_ids: courseIds(), total_amount: money() }),
  OrderPaid: () => record({ order_id: id(), user_id: id(), course_ids: courseIds(), payment_id: paymentId() }),
  OrderRefunded: () => record({ order_id: id(), user_id: id(), course_ids: courseIds(), refund_reason: reason() }),
  OrderCancelled: () => record({ order_id: id(), user_id: id() }),
  CourseAccessGranted: () => fc.tuple(accessIds(), orNull(timestamp()), orNull(id())).map(([ids, expires_at, order_id]) => ({ ...ids, expires_at, order_id })),
  AccessRevoked: () => fc.tuple(accessIds(), reason()).map(([ids, r]) => ({ ...ids, reason: r })),
  AccessExpired: () => fc.tuple(accessIds(), timestamp()).map(([ids, expired_at]) => ({ ...ids, expired_at })),
  ProgressUpdated: () => fc.tuple(accessIds(), percent()).map(([ids, progress]) => ({ ...ids, progress })),
  CourseCompleted: () => accessIds(),
};

/** A payload its event type's schema accepts unchanged. */
export function validPayload<T extends EventType>(type: T): fc.Arbitrary<PayloadOf<T>> {
  return (payloads[type] as () => fc.Arbitrary<PayloadOf<T>>)();
}

/** The payload field that names the aggregate, per context. */
export const AGGREGATE_KEY = { users: "user_id", courses: "course_id", policies: "policy_id", orders: "order_id", access: "access_id" } as const;

/** A complete current-version envelope of an event type (of any type when none is given). */
export function validEnvelope<T extends EventType>(type: T): fc.Arbitrary<EventEnvelope<T>>;
export function validEnvelope(): fc.Arbitrary<EventEnvelope>;
export function validEnvelope(type?: EventType): fc.Arbitrary<EventEnvelope> {
  if (type === undefined) return fc.oneof(...EVENT_TYPES.map((t) => validEnvelope(t) as fc.Arbitrary<EventEnvelope>));
  const context = EventContexts[type];
  return fc
    .record({
      event_id: eventId(),
      occurred_on: timestamp(),
      aggregate_version: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
      correlation_id: traceId(),
      causation_id: orNull(traceId()),
      payload: validPayload(type),
    })
    .map(
      ({ payload, ...rest }) =>
        ({
          event_id: rest.event_id,
          event_type: type,
          event_version: EventVersions[type],
          occurred_on: rest.occurred_on,
          aggregate_type: Contexts[context].aggregate,
          aggregate_id: (payload as Record<string, string>)[AGGREGATE_KEY[context]]!,
          aggregate_version: rest.aggregate_version,
          correlation_id: rest.correlation_id,
          causation_id: rest.causation_id,
          payload,
        }) as EventEnvelope,
    );
}

/**
 * A CourseAccessGranted as the version-1 code wrote it (`event_version` 1, no `order_id`), with the
 * current envelope it must upcast to (`order_id` null, `event_version` 2).
 */
export function courseAccessGrantedV1(): fc.Arbitrary<{ v1: Record<string, unknown>; upcast: EventEnvelope<"CourseAccessGranted"> }> {
  return validEnvelope("CourseAccessGranted").map((current) => {
    const { order_id: _dropped, ...payload } = current.payload;
    return { v1: { ...current, event_version: 1, payload }, upcast: { ...current, payload: { ...payload, order_id: null } } };
  });
}

// ---------------------------------------------------------------------------------------------
// Spoiling one string of a valid value

/** Where a value sits inside a body: map keys and array indexes, as zod reports issue paths. */
export type Path = (string | number)[];

/** The paths of every string inside a value (map keys themselves excluded). */
export function stringPaths(value: unknown, path: Path = []): Path[] {
  if (typeof value === "string") return [path];
  if (Array.isArray(value)) return value.flatMap((v, i) => stringPaths(v, [...path, i]));
  if (value !== null && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => stringPaths(v, [...path, k]));
  return [];
}

/** The value at a path. */
export function getAt(value: unknown, path: Path): unknown {
  return path.reduce<unknown>((v, key) => (v as Record<string | number, unknown>)[key], value);
}

/** A deep copy of `value` with `replacement` at `path`. */
export function setAt<T>(value: T, path: Path, replacement: unknown): T {
  const copy = structuredClone(value);
  if (path.length === 0) return replacement as T;
  const parent = getAt(copy, path.slice(0, -1)) as Record<string | number, unknown>;
  parent[path.at(-1)!] = replacement;
  return copy;
}

/**
 * A valid value with one of its strings (any one, at any depth) spoiled by a NUL or a lone surrogate at
 * any position. Values without strings are skipped.
 */
export function withHostileString<T>(valid: fc.Arbitrary<T>): fc.Arbitrary<{ valid: T; path: Path; hostile: T }> {
  return fc
    .tuple(valid, fc.nat(), hostileChar(), fc.nat())
    .filter(([v]) => stringPaths(v).length > 0)
    .map(([v, pick, c, at]) => {
      const paths = stringPaths(v);
      const path = paths[pick % paths.length]!;
      return { valid: v, path, hostile: setAt(v, path, insertAt(getAt(v, path) as string, c, at)) };
    });
}
