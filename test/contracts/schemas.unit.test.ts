import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  AnyEvent,
  COMMAND_TYPES,
  CommandDefinitions,
  Contexts,
  deriveAccessId,
  EVENT_TYPES,
  EventSchemas,
  ERROR_CODES,
  ErrorCatalogue,
  ErrorReply,
  errorReply,
  errors,
  isNerveError,
  NerveError,
  QUERY_TYPES,
  QueryDefinitions,
  querySuccess,
  type EventType,
} from "../../contracts/index.js";
import { commandSamples, envelopeSample, EVENT_ID, querySamples } from "./samples.js";

type Mutation = (e: Record<string, unknown>) => void;
const mutated = (type: EventType, mutate: Mutation) => {
  const e = structuredClone(envelopeSample(type)) as Record<string, unknown>;
  mutate(e);
  return e;
};
const payloadOf = (e: Record<string, unknown>) => e.payload as Record<string, unknown>;

describe("event envelopes", () => {
  it("covers the contract's 19 event types", () => {
    expect(EVENT_TYPES).toHaveLength(19);
    expect(Object.keys(EventSchemas).sort()).toEqual([...EVENT_TYPES].sort());
  });

  it.each(EVENT_TYPES)("%s accepts a valid envelope, alone and through AnyEvent", (type) => {
    const sample = envelopeSample(type);
    expect(EventSchemas[type].safeParse(sample).success).toBe(true);
    expect(AnyEvent.parse(sample)).toEqual(sample);
  });

  const envelopeFields = Object.keys(envelopeSample("UserRegistered"));
  const envelopeMutations: Array<[string, Mutation]> = [
    ...envelopeFields.map((f): [string, Mutation] => [`missing ${f}`, (e) => delete e[f]]),
    ["event_version as a string", (e) => (e.event_version = "1")],
    ["the next event_version (not the current one)", (e) => (e.event_version = (e.event_version as number) + 1)],
    ["the previous event_version (upcast first)", (e) => (e.event_version = (e.event_version as number) - 1)],
    ["aggregate_version 0", (e) => (e.aggregate_version = 0)],
    ["aggregate_version 1.5", (e) => (e.aggregate_version = 1.5)],
    ["aggregate_id with a dot", (e) => (e.aggregate_id = "a.b")],
    ["aggregate_id of 65 chars", (e) => (e.aggregate_id = "a".repeat(65))],
    ["a UUIDv4 event_id", (e) => (e.event_id = "0192f0c5-7b1e-4c3a-8f2d-1a2b3c4d5e6f")],
    ["an upper-case event_id", (e) => (e.event_id = EVENT_ID.toUpperCase())],
    ["a timestamp without milliseconds", (e) => (e.occurred_on = "2026-11-26T23:20:39Z")],
    ["a timestamp without Z", (e) => (e.occurred_on = "2026-11-26T23:20:39.123")],
    ["a timestamp with an offset", (e) => (e.occurred_on = "2026-11-26T23:20:39.123+01:00")],
    ["the wrong aggregate_type", (e) => (e.aggregate_type = e.aggregate_type === "User" ? "Order" : "User")],
    ["an empty correlation_id", (e) => (e.correlation_id = "")],
    ["an unknown envelope key", (e) => (e.extra = 1)],
    ["an unknown payload key", (e) => (payloadOf(e).extra = 1)],
    ["a payload that is not a map", (e) => (e.payload = [])],
  ];
  const envelopeCases = EVENT_TYPES.flatMap((type) => envelopeMutations.map(([what, mutate]) => ({ type, what, mutate })));

  it.each(envelopeCases)("$type rejects $what", ({ type, mutate }) => {
    expect(EventSchemas[type].safeParse(mutated(type, mutate)).success).toBe(false);
  });

  it.each(EVENT_TYPES)("%s accepts a null causation_id", (type) => {
    expect(EventSchemas[type].safeParse(mutated(type, (e) => (e.causation_id = null))).success).toBe(true);
  });

  it("rejects an envelope under another type's schema", () => {
    expect(EventSchemas.OrderPaid.safeParse(envelopeSample("OrderPlaced")).success).toBe(false);
  });

  const payloadCases: Array<[EventType, string, Mutation]> = [
    ["ProgressUpdated", "progress 101", (e) => (payloadOf(e).progress = 101)],
    ["ProgressUpdated", "progress -1", (e) => (payloadOf(e).progress = -1)],
    ["ProgressUpdated", "fractional progress", (e) => (payloadOf(e).progress = 50.5)],
    ["OrderPlaced", "negative money", (e) => (payloadOf(e).total_amount = { amount: -1, currency: "USD" })],
    ["OrderPlaced", "fractional money", (e) => (payloadOf(e).total_amount = { amount: 1.5, currency: "USD" })],
    ["OrderPlaced", "lower-case currency", (e) => (payloadOf(e).total_amount = { amount: 100, currency: "usd" })],
    ["OrderPlaced", "a four-letter currency", (e) => (payloadOf(e).total_amount = { amount: 100, currency: "USDT" })],
    ["OrderPlaced", "duplicate course_ids", (e) => (payloadOf(e).course_ids = ["c1", "c1"])],
    ["OrderPlaced", "no course_ids", (e) => (payloadOf(e).course_ids = [])],
    ["OrderPlaced", "51 course_ids", (e) => (payloadOf(e).course_ids = Array.from({ length: 51 }, (_, i) => `c${i}`))],
    ["CourseUpdated", "negative price", (e) => (payloadOf(e).price = { amount: -100, currency: "EUR" })],
    ["UserRegistered", "an upper-case email", (e) => (payloadOf(e).email = "Ada@Example.com")],
    ["UserRegistered", "an invalid email", (e) => (payloadOf(e).email = "ada-at-example.com")],
    ["UserRegistered", "a blank name", (e) => (payloadOf(e).name = "   ")],
    ["UserEmailChanged", "an upper-case new_email", (e) => (payloadOf(e).new_email = "ADA@LOVELACE.ORG")],
    ["PolicyCreated", "refund_period_days 366", (e) => (payloadOf(e).refund_period_days = 366)],
    ["PolicyCreated", "an unknown policy type", (e) => (payloadOf(e).type = "partial")],
    ["PolicyUpdated", "empty new_conditions", (e) => (payloadOf(e).new_conditions = {})],
    ["PolicyDeprecated", "a missing replacement_policy_id", (e) => delete payloadOf(e).replacement_policy_id],
    ["CourseAccessGranted", "an access_id not derived", (e) => (payloadOf(e).access_id = "acc_123")],
    ["CourseAccessGranted", "a date-only expires_at", (e) => (payloadOf(e).expires_at = "2026-12-01")],
    ["CourseAccessGranted", "a version-1 payload (no order_id) at version 2", (e) => delete payloadOf(e).order_id],
    ["CourseAccessGranted", "an order_id that is not an id", (e) => (payloadOf(e).order_id = "ord.1")],
    ["AccessExpired", "a missing expired_at", (e) => delete payloadOf(e).expired_at],
    ["OrderPaid", "a number as payment_id", (e) => (payloadOf(e).payment_id = 123)],
  ];

  it.each(payloadCases)("%s rejects %s", (type, _what, mutate) => {
    expect(EventSchemas[type].safeParse(mutated(type, mutate)).success).toBe(false);
  });
});

describe("profile_data", () => {
  const event = (profile_data: unknown) => mutated("UserProfileUpdated", (e) => (payloadOf(e).profile_data = profile_data));
  const command = CommandDefinitions.UpdateUserProfile.body;

  it.each([
    ["null clears a field", { display_name: null }],
    ["https avatar", { avatar_url: "https://cdn.example.com/ada.png" }],
    ["BCP 47 locale", { locale: "pt-BR" }],
    ["IANA time zone", { timezone: "America/Argentina/Buenos_Aires" }],
    ["bio of 2,000 chars", { bio: "b".repeat(2000) }],
  ])("accepts %s", (_what, profile) => {
    expect(EventSchemas.UserProfileUpdated.safeParse(event(profile)).success).toBe(true);
    expect(command.safeParse({ profile_data: profile }).success).toBe(true);
  });

  it.each([
    ["an unknown key", { nickname: "ada" }],
    ["an http avatar", { avatar_url: "http://cdn.example.com/ada.png" }],
    ["a non-URL avatar", { avatar_url: "ada.png" }],
    ["a malformed locale", { locale: "en_GB" }],
    ["a locale that is not a tag", { locale: "not a locale" }],
    ["an unknown time zone", { timezone: "Mars/Olympus_Mons" }],
    ["a time-zone offset", { timezone: "+01:00" }],
    ["an empty display_name", { display_name: "" }],
    ["a display_name of 101 chars", { display_name: "d".repeat(101) }],
    ["a bio of 2,001 chars", { bio: "b".repeat(2001) }],
    ["no field at all", {}],
  ])("rejects %s", (_what, profile) => {
    expect(EventSchemas.UserProfileUpdated.safeParse(event(profile)).success).toBe(false);
    expect(command.safeParse({ profile_data: profile }).success).toBe(false);
  });
});

describe("what a command must give exactly (events already published keep the looser forms they were written under)", () => {
  const profile = CommandDefinitions.UpdateUserProfile.body;
  const event = (profile_data: unknown) => mutated("UserProfileUpdated", (e) => (payloadOf(e).profile_data = profile_data));

  it.each([
    ["an https: URL without //, which a browser reads as a relative path", "https:cdn.example.com/ada.png"],
    ["https:/ with one slash", "https:/evil.example/a"],
    ["leading white space (zod's URL check trimmed it)", " https://cdn.example.com/ada.png"],
    ["trailing no-break space", "https://cdn.example.com/ada.png\u00a0"],
    ["a tab inside", "https://cdn.example.com/a\tb.png"],
  ])("refuses an avatar_url with %s", (_what, url) => {
    expect(profile.safeParse({ profile_data: { avatar_url: url } }).success).toBe(false);
  });

  it("keeps an avatar_url exactly as sent", () => {
    const url = "HTTPS://cdn.example.com/ada.png?size=64#top";
    expect(profile.parse({ profile_data: { avatar_url: url } }).profile_data.avatar_url).toBe(url);
  });

  it.each(["europe/paris", "EUROPE/PARIS", "utc", "us/pacific", "gmt", "est", "asia/kolkata"])("refuses the time zone %s, which only JavaScript resolves", (timezone) => {
    expect(profile.safeParse({ profile_data: { timezone } }).success).toBe(false);
    // Published before, it still reads.
    expect(EventSchemas.UserProfileUpdated.safeParse(event({ timezone })).success).toBe(true);
  });

  it.each(["Europe/Paris", "UTC", "US/Eastern", "US/Pacific", "Etc/GMT+5", "GMT", "EST", "Asia/Kolkata", "Asia/Calcutta", "Europe/Kyiv", "America/Port-au-Prince"])("takes the time zone %s (names and aliases as the database writes them)", (timezone) => {
    expect(profile.safeParse({ profile_data: { timezone } }).success).toBe(true);
  });

  it.each([
    ["a local part of 65 characters", `${"a".repeat(65)}@example.com`],
    ["a domain label of 64 characters", `ada@${"b".repeat(64)}.com`],
    ["a label ending in a hyphen", "ada@example-.com"],
    ["a label beginning with a hyphen", "ada@-example.com"],
  ])("refuses an email with %s", (_what, email) => {
    expect(CommandDefinitions.RegisterUser.body.safeParse({ email, name: "Ada" }).success).toBe(false);
    expect(CommandDefinitions.ChangeUserEmail.body.safeParse({ new_email: email }).success).toBe(false);
  });

  it.each([
    ["a zero-width space", "\u200B"],
    ["a word joiner and a zero-width joiner", "\u2060\u200D"],
    ["a Hangul filler", "\u3164"],
    ["a soft hyphen between spaces", " \u00AD "],
    ["a bell (a control character)", "\u0007"],
    ["a right-to-left mark", "\u200F"],
    ["a Mongolian vowel separator and a variation selector", "\u180E\uFE0F"],
  ])("refuses a name, title, reason or search text of only %s: blank to a reader", (_what, text) => {
    expect(CommandDefinitions.RegisterUser.body.safeParse({ email: "ada@example.com", name: text }).success).toBe(false);
    expect(CommandDefinitions.CreateCourse.body.safeParse({ title: text, instructor_id: "i", policy_id: "p" }).success).toBe(false);
    expect(CommandDefinitions.UpdateCourse.body.safeParse({ title: text }).success).toBe(false);
    expect(CommandDefinitions.CreatePolicy.body.safeParse({ name: text, type: "standard", refund_period_days: 14 }).success).toBe(false);
    expect(CommandDefinitions.RefundOrder.body.safeParse({ refund_reason: text }).success).toBe(false);
    expect(CommandDefinitions.RevokeCourseAccess.body.safeParse({ reason: text }).success).toBe(false);
    expect(CommandDefinitions.MarkOrderPaid.body.safeParse({ payment_id: text }).success).toBe(false);
    expect(CommandDefinitions.UpdateUserProfile.body.safeParse({ profile_data: { display_name: text } }).success).toBe(false);
    expect(QueryDefinitions.SearchCatalog.body.safeParse({ text }).success).toBe(false);
    // Published before, it still reads (unless trim() sees it blank, as it always did).
    if (text.trim() !== "") expect(EventSchemas.UserRegistered.safeParse(mutated("UserRegistered", (e) => (payloadOf(e).name = text))).success).toBe(true);
  });

  it.each(["a\u200B", "\u200Bé", "👩‍💻", "\u2800", "\u0301", "ﾠx"])("takes %j: something in it shows", (text) => {
    expect(CommandDefinitions.RegisterUser.body.safeParse({ email: "ada@example.com", name: text }).success).toBe(true);
    expect(QueryDefinitions.SearchCatalog.body.safeParse({ text }).success).toBe(true);
  });

  it("takes an email at the limits: a local part of 64, labels of 63", () => {
    const email = `${"a".repeat(64)}@${"b".repeat(63)}.example.com`;
    expect(CommandDefinitions.RegisterUser.body.safeParse({ email, name: "Ada" }).success).toBe(true);
  });
});

describe("command bodies", () => {
  it("covers the contract's 17 commands", () => {
    expect(COMMAND_TYPES).toHaveLength(17);
    expect(Object.keys(commandSamples).sort()).toEqual([...COMMAND_TYPES].sort());
  });

  it.each(COMMAND_TYPES)("%s accepts its valid sample", (type) => {
    expect(CommandDefinitions[type].body.safeParse(commandSamples[type].valid).success).toBe(true);
  });

  it.each(COMMAND_TYPES)("%s rejects its invalid sample", (type) => {
    expect(CommandDefinitions[type].body.safeParse(commandSamples[type].invalid).success).toBe(false);
  });

  it.each(COMMAND_TYPES)("%s rejects an unknown key", (type) => {
    const body = { ...(commandSamples[type].valid as object), unexpected: true };
    expect(CommandDefinitions[type].body.safeParse(body).success).toBe(false);
  });

  it.each(COMMAND_TYPES)("%s emits only events of its own context", (type) => {
    const def = CommandDefinitions[type];
    expect(def.emits.length).toBeGreaterThan(0);
    for (const e of def.emits) expect(EventSchemas[e].shape.aggregate_type.value).toBe(Contexts[def.context].aggregate);
  });
});

describe("query bodies and results", () => {
  it("covers the contract's 11 queries", () => {
    expect(QUERY_TYPES).toHaveLength(11);
    expect(Object.keys(querySamples).sort()).toEqual([...QUERY_TYPES].sort());
  });

  it.each(QUERY_TYPES)("%s accepts its valid body and rejects its invalid one", (type) => {
    expect(QueryDefinitions[type].body.safeParse(querySamples[type].valid).success).toBe(true);
    expect(QueryDefinitions[type].body.safeParse(querySamples[type].invalid).success).toBe(false);
  });

  it.each(QUERY_TYPES)("%s accepts its sample result inside a success reply", (type) => {
    const reply = { ok: true, result: querySamples[type].result };
    expect(querySuccess(QueryDefinitions[type].result).safeParse(reply).success).toBe(true);
  });
});

describe("deriveAccessId", () => {
  it.each([
    ["user-42", "course_7"],
    ["u", "c"],
    ["A".repeat(64), "z".repeat(64)],
  ])("derives acc_ + 32 hex of sha256(%s:%s)", async (user, course) => {
    // WebCrypto rather than node:crypto's createHash, so the check does not repeat the implementation.
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${user}:${course}`)));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    expect(deriveAccessId(user, course)).toBe(`acc_${hex.slice(0, 32)}`);
  });

  it("matches a known vector and differs when the pair is swapped", () => {
    expect(deriveAccessId("user-42", "course_7")).toBe("acc_b028d78e4af7cfc40e227354275cb960");
    expect(deriveAccessId("course_7", "user-42")).not.toBe(deriveAccessId("user-42", "course_7"));
    expect(createHash("sha256").update("user-42:course_7").digest("hex")).toMatch(/^b028d78e4af7cfc40e227354275cb960/);
  });
});

describe("error catalogue", () => {
  const contractStatus = { invalid_request: 400, not_found: 404, conflict: 409, rule_violated: 422, unavailable: 503, internal: 500 };

  it("has exactly the contract's codes", () => {
    expect([...ERROR_CODES].sort()).toEqual(Object.keys(contractStatus).sort());
  });

  it.each(Object.entries(contractStatus))("%s has status %i", (code, status) => {
    expect(ErrorCatalogue[code as keyof typeof contractStatus].status).toBe(status);
  });

  it.each(ERROR_CODES)("NerveError(%s) carries code, status and retryable", (code) => {
    const cause = new Error("root cause");
    const err = new NerveError(code, "it failed", { details: { field: "x" }, cause });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("NerveError");
    expect(err.code).toBe(code);
    expect(err.status).toBe(contractStatus[code]);
    expect(err.retryable).toBe(code === "unavailable");
    expect(err.details).toEqual({ field: "x" });
    expect(err.cause).toBe(cause);
    expect(isNerveError(err, code)).toBe(true);
    expect(ErrorReply.parse(errorReply(err))).toEqual({ ok: false, error: { code, message: "it failed", details: { field: "x" } } });
  });

  it("shorthand constructors build the right codes", () => {
    expect(errors.notFound("missing").code).toBe("not_found");
    expect(errors.unavailable("busy").retryable).toBe(true);
    expect(errors.internal("bug", new Error("x")).cause).toBeInstanceOf(Error);
    expect(isNerveError(new Error("plain"))).toBe(false);
    expect(isNerveError(errors.conflict("taken"), "not_found")).toBe(false);
    expect(errorReply(errors.conflict("taken"))).toEqual({ ok: false, error: { code: "conflict", message: "taken" } });
  });

  it("an error reply with an unknown code is refused", () => {
    expect(ErrorReply.safeParse({ ok: false, error: { code: "teapot", message: "no" } }).success).toBe(false);
  });
});
