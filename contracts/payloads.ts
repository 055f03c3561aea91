/** Payload schemas of the 19 domain events, current and older versions (CONTRACT.md §2, "Payloads" and "Versions"). */
import { z } from "zod";
import { AccessId, Email, HttpsUrl, HttpsUrlInput, Id, Locale, Money, PlainText, Text, TextInput, TimeZone, TimeZoneInput, Timestamp } from "./values.js";

/** A person's or a thing's display name. */
export const Name = Text(200);
/** A name as a command takes it: something visible in it (events written before keep {@link Name}). */
export const NameInput = TextInput(200);
/** A course description: may be empty. */
export const Description = PlainText.max(10_000);
/** Course ids of an order: 1..50 distinct ids. */
export const CourseIds = z
  .array(Id)
  .min(1)
  .max(50)
  .refine((ids) => new Set(ids).size === ids.length, "course_ids must be distinct");
/** Refund policy types. */
export const PolicyType = z.enum(["standard", "conditional", "no_refund"]);
export type PolicyType = z.infer<typeof PolicyType>;
/** Days a refund stays possible after payment. */
export const RefundPeriodDays = z.number().int().min(0).max(365);
/** A progress percentage. */
export const Percent = z.number().int().min(0).max(100);
/** A free-text reason. */
export const Reason = Text(500);
/** A reason as a command takes it. */
export const ReasonInput = TextInput(500);
/** A payment provider's reference. */
export const PaymentId = Text(128);
/** A payment reference as a command takes it. */
export const PaymentIdInput = TextInput(128);

const profilePatch = (url: typeof HttpsUrl | typeof HttpsUrlInput, timezone: typeof TimeZone, text: typeof Text) =>
  z
    .strictObject({
      display_name: text(100).nullable().optional(),
      bio: PlainText.max(2000).nullable().optional(),
      avatar_url: url.nullable().optional(),
      locale: Locale.nullable().optional(),
      timezone: timezone.nullable().optional(),
    })
    .refine((p) => Object.keys(p).length > 0, "profile_data must name at least one field");

/** The editable profile fields as published (UserProfileUpdated); `null` clears a field, unknown keys are refused. */
export const ProfilePatch = profilePatch(HttpsUrl, TimeZone, Text);
export type ProfilePatch = z.infer<typeof ProfilePatch>;

/**
 * The profile fields as UpdateUserProfile takes them: an avatar URL exactly as sent, a time zone in the
 * database's own case. (Events published before keep the looser forms they were written under.)
 */
export const ProfilePatchInput = profilePatch(HttpsUrlInput, TimeZoneInput, TextInput);

/** Conditions a policy update may change. */
export const PolicyConditions = z
  .strictObject({ refund_period_days: RefundPeriodDays.optional(), max_progress_percent: Percent.optional() })
  .refine((c) => Object.keys(c).length > 0, "new_conditions must name at least one condition");

const access = { access_id: AccessId, user_id: Id, course_id: Id };

/** CourseAccessGranted version 1: no `order_id`. Streams keep it forever; readers upcast it to version 2. */
export const CourseAccessGrantedV1 = z.strictObject({ ...access, expires_at: Timestamp.nullable() });

/** Payload schemas of the current version (see `EventVersions`), keyed by event type. */
export const Payloads = {
  UserRegistered: z.strictObject({ user_id: Id, email: Email, name: Name }),
  UserProfileUpdated: z.strictObject({ user_id: Id, profile_data: ProfilePatch }),
  UserEmailChanged: z.strictObject({ user_id: Id, old_email: Email, new_email: Email }),
  CourseCreated: z.strictObject({ course_id: Id, title: Name, instructor_id: Id, policy_id: Id }),
  CourseUpdated: z.strictObject({ course_id: Id, title: Name, description: Description, price: Money.nullable() }),
  CourseDeprecated: z.strictObject({ course_id: Id, title: Name }),
  CoursePolicyChanged: z.strictObject({ course_id: Id, old_policy_id: Id, new_policy_id: Id }),
  PolicyCreated: z.strictObject({
    policy_id: Id,
    name: Name,
    type: PolicyType,
    refund_period_days: RefundPeriodDays,
    max_progress_percent: Percent.optional(),
  }),
  PolicyUpdated: z.strictObject({ policy_id: Id, new_conditions: PolicyConditions }),
  PolicyDeprecated: z.strictObject({ policy_id: Id, name: Name, replacement_policy_id: Id.nullable() }),
  OrderPlaced: z.strictObject({ order_id: Id, user_id: Id, course_ids: CourseIds, total_amount: Money }),
  OrderPaid: z.strictObject({ order_id: Id, user_id: Id, course_ids: CourseIds, payment_id: PaymentId }),
  OrderRefunded: z.strictObject({ order_id: Id, user_id: Id, course_ids: CourseIds, refund_reason: Reason }),
  OrderCancelled: z.strictObject({ order_id: Id, user_id: Id }),
  // Version 2: the order whose payment granted the access, null when none did (or not known, version 1).
  CourseAccessGranted: CourseAccessGrantedV1.extend({ order_id: Id.nullable() }),
  AccessRevoked: z.strictObject({ ...access, reason: Reason }),
  AccessExpired: z.strictObject({ ...access, expired_at: Timestamp }),
  ProgressUpdated: z.strictObject({ ...access, progress: Percent }),
  CourseCompleted: z.strictObject({ ...access }),
} as const;

/** Payload schemas of the versions before the current one, by event type and version (for schemas and docs). */
export const OlderPayloads = {
  CourseAccessGranted: { 1: CourseAccessGrantedV1 },
} as const satisfies Partial<Record<keyof typeof Payloads, Record<number, z.ZodType>>>;
