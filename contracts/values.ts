/** Shared value objects of the contract (CONTRACT.md §1). */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { z } from "zod";

/** Pattern of an aggregate id: one safe NATS subject token. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** An aggregate id: safe as one NATS subject token (no `.`, `*`, `>`, spaces). */
export const Id = z.string().regex(ID_PATTERN, "must match ^[A-Za-z0-9_-]{1,64}$");
export type Id = z.infer<typeof Id>;

/** An access record id: `acc_` + 32 lower-case hex digits, always derived by {@link deriveAccessId}. */
export const AccessId = z.string().regex(/^acc_[0-9a-f]{32}$/, "must be acc_ + 32 hex digits");
export type AccessId = z.infer<typeof AccessId>;

/** Derives the access id of a (user, course) pair: `acc_` + first 32 hex of sha256(user_id:course_id). */
export function deriveAccessId(userId: string, courseId: string): AccessId {
  return `acc_${createHash("sha256").update(`${userId}:${courseId}`).digest("hex").slice(0, 32)}`;
}

/** A UUID version 7 in lower-case canonical form. */
export const EventId = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, "must be a lower-case UUIDv7");
export type EventId = z.infer<typeof EventId>;

/** An ISO-8601 UTC timestamp with milliseconds and `Z`. */
export const Timestamp = z.iso.datetime({ precision: 3 });
export type Timestamp = z.infer<typeof Timestamp>;

/** Formats a Date as a contract timestamp. */
export const toTimestamp = (d: Date): Timestamp => d.toISOString();

/** An amount of money in minor units with an ISO-4217 currency code. */
export const Money = z.strictObject({
  amount: z.number().int().min(0),
  currency: z.string().regex(/^[A-Z]{3}$/, "must be three upper-case letters"),
});
export type Money = z.infer<typeof Money>;

/** An e-mail address's syntax (any case). */
const EmailSyntax = z.email().max(254);

// The limits of RFC 5321 and of DNS that zod's pattern leaves out: a local part of at most 64
// characters, domain labels of 1–63 that neither begin nor end with a hyphen.
function withinAddressLimits(email: string): boolean {
  const at = email.lastIndexOf("@");
  if (at < 1 || at > 64) return false;
  return email
    .slice(at + 1)
    .split(".")
    .every((label) => label.length >= 1 && label.length <= 63 && !label.startsWith("-") && !label.endsWith("-"));
}

/** An e-mail address as it arrives in a command (any case), within the limits of RFC 5321 and DNS. */
export const EmailInput = EmailSyntax.refine(withinAddressLimits, "must be a deliverable address: a local part of at most 64 characters, domain labels of 1 to 63 characters not beginning or ending with a hyphen");

/** An e-mail address as stored and published: lower-cased. (Published events keep the looser syntax they were written under.) */
export const Email = EmailSyntax.regex(/^[^A-Z]*$/, "must be lower-case");
export type Email = z.infer<typeof Email>;

/** Normalises an address for storage and uniqueness checks. */
export const normaliseEmail = (email: string): Email => email.trim().toLowerCase();

/**
 * What is not contract text (CONTRACT.md §1): U+0000, which PostgreSQL cannot store and SQLite reads as
 * the end of a statement, and a lone surrogate, which is no Unicode at all (UTF-8 cannot encode it).
 */
const NOT_TEXT = /[\u0000\p{Cs}]/u;

/** Whether a string is contract text: valid Unicode without U+0000. */
export const isText = (s: string): boolean => !NOT_TEXT.test(s);

/** The refusal message of a string that is not contract text. */
export const NOT_TEXT_MESSAGE = "must be valid Unicode without U+0000";

/**
 * Any free string of the contract: valid Unicode without U+0000, stored and returned exactly. The
 * pattern is written without `\p{…}` and means the same with or without JavaScript's `u` flag, so the
 * generated JSON Schemas' `pattern` works in any validator (Python's `re`, Ajv, a JS RegExp without `u`):
 * any unit but U+0000 and surrogates, or a high surrogate followed by a low one.
 */
export const PlainText = z.string().regex(/^(?:[^\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])*$/, NOT_TEXT_MESSAGE);

/**
 * Characters that show nothing by themselves: white space (what `trim()` removes, and U+0085, U+180E),
 * control characters, format characters (zero-width spaces and joiners, bidirectional marks, the soft
 * hyphen, tags) and the rest of Unicode's default-ignorable code points (fillers, variation selectors).
 */
const INVISIBLE = /^[\p{White_Space}\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\uFEFF]*$/u;

/** Whether a text shows nothing: empty, or only white space and invisible characters (a name of `\u200B` is blank). */
export const isBlank = (s: string): boolean => INVISIBLE.test(s);

/**
 * A short human text in an event: not blank as `trim()` sees it, bounded; kept exactly as sent (no
 * trimming). Events written before {@link TextInput} refused invisible-only text keep validating.
 */
export const Text = (max: number) =>
  PlainText.min(1)
    .max(max)
    .refine((s) => s.trim().length > 0, "must not be blank");

/** A short human text as a command or query takes it: {@link Text}, and something visible in it ({@link isBlank}). */
export const TextInput = (max: number) =>
  PlainText.min(1)
    .max(max)
    .refine((s) => !isBlank(s), "must not be blank");

function isLocale(tag: string): boolean {
  try {
    return Intl.getCanonicalLocales(tag).length === 1;
  } catch {
    return false;
  }
}

function isTimeZone(tz: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(tz)) return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** A BCP 47 language tag, e.g. `en-GB`. */
export const Locale = PlainText.max(35).refine(isLocale, "must be a BCP 47 language tag");

/** An IANA time-zone name, e.g. `Europe/Paris`. */
export const TimeZone = PlainText.max(64).refine(isTimeZone, "must be an IANA time-zone name");

// A name as the time-zone database writes it, zones and links alike ("Europe/Paris", "US/Pacific", "EST"):
// JavaScript resolves "europe/paris" and "us/pacific" too, other languages' libraries (Python's zoneinfo,
// Java's ZoneId) refuse them. ICU's own list has the canonical zones only, and canonicalises a link
// ("us/pacific" → America/Los_Angeles), so the names come from the database itself (the tzdata package).
let tzNames: ReadonlySet<string> | undefined;
function inItsOwnCase(tz: string): boolean {
  tzNames ??= new Set(Object.keys((createRequire(import.meta.url)("tzdata") as { zones: Record<string, unknown> }).zones).filter((n) => n !== "Factory"));
  return tzNames.has(tz);
}

/** An IANA time-zone name as a command gives it: written as the database writes it. */
export const TimeZoneInput = TimeZone.refine(inItsOwnCase, "must be written as the IANA database writes it (e.g. Europe/Paris, UTC)");

/** An https URL. */
export const HttpsUrl = z.url({ protocol: /^https$/ }).max(2048).regex(/^(?:[^\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])*$/, NOT_TEXT_MESSAGE);

// `https://`, a host, and nothing a URL cannot hold as it is (white space, control characters): zod's URL
// check trims its input (" https://x.com" was stored as "https://x.com") and takes "https:x.com", which a
// browser reads as a path relative to the page.
function isExactHttpsUrl(url: string): boolean {
  if (!/^https:\/\/[^\s\p{Cc}]+$/iu.test(url)) return false;
  try {
    const u = new URL(url);
    return u.protocol === "https:" && u.hostname !== "";
  } catch {
    return false;
  }
}

/** An https URL as a command gives it, stored exactly as sent. */
export const HttpsUrlInput = PlainText.max(2048)
  .regex(/^[Hh][Tt][Tt][Pp][Ss]:\/\/[^\s]+$/, "must be an https:// URL with a host, without spaces or control characters")
  .refine(isExactHttpsUrl, "must be an https:// URL with a host, without spaces or control characters");
