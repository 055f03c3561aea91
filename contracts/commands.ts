/** Command bodies of the contract (CONTRACT.md §3), keyed by command type. */
import { z } from "zod";
import { CourseIds, Description, NameInput, PaymentIdInput, Percent, PolicyConditions, PolicyType, ProfilePatchInput, ReasonInput, RefundPeriodDays } from "./payloads.js";
import type { Context } from "./subjects.js";
import type { EventType } from "./events.js";
import { EmailInput, Id, Money, Timestamp } from "./values.js";

const empty = z.strictObject({});

/** Every command: its context, body schema, the events it may emit, and whether it creates the aggregate. */
export const CommandDefinitions = {
  RegisterUser: { context: "users", creates: true, emits: ["UserRegistered"], body: z.strictObject({ email: EmailInput, name: NameInput }) },
  UpdateUserProfile: { context: "users", creates: false, emits: ["UserProfileUpdated"], body: z.strictObject({ profile_data: ProfilePatchInput }) },
  ChangeUserEmail: { context: "users", creates: false, emits: ["UserEmailChanged"], body: z.strictObject({ new_email: EmailInput }) },
  CreatePolicy: {
    context: "policies",
    creates: true,
    emits: ["PolicyCreated"],
    body: z.strictObject({ name: NameInput, type: PolicyType, refund_period_days: RefundPeriodDays, max_progress_percent: Percent.optional() }),
  },
  UpdatePolicy: { context: "policies", creates: false, emits: ["PolicyUpdated"], body: z.strictObject({ new_conditions: PolicyConditions }) },
  DeprecatePolicy: {
    context: "policies",
    creates: false,
    emits: ["PolicyDeprecated"],
    body: z.strictObject({ replacement_policy_id: Id.nullable().optional() }),
  },
  CreateCourse: {
    context: "courses",
    creates: true,
    emits: ["CourseCreated", "CourseUpdated"],
    body: z.strictObject({ title: NameInput, instructor_id: Id, policy_id: Id, description: Description.optional(), price: Money.nullable().optional() }),
  },
  UpdateCourse: {
    context: "courses",
    creates: false,
    emits: ["CourseUpdated"],
    body: z
      .strictObject({ title: NameInput.optional(), description: Description.optional(), price: Money.nullable().optional() })
      .refine((b) => Object.keys(b).length > 0, "name at least one of title, description, price"),
  },
  DeprecateCourse: { context: "courses", creates: false, emits: ["CourseDeprecated"], body: empty },
  ChangeCoursePolicy: { context: "courses", creates: false, emits: ["CoursePolicyChanged"], body: z.strictObject({ new_policy_id: Id }) },
  PlaceOrder: {
    context: "orders",
    creates: true,
    emits: ["OrderPlaced"],
    body: z.strictObject({ user_id: Id, course_ids: CourseIds, total_amount: Money.optional() }),
  },
  MarkOrderPaid: { context: "orders", creates: false, emits: ["OrderPaid"], body: z.strictObject({ payment_id: PaymentIdInput }) },
  RefundOrder: { context: "orders", creates: false, emits: ["OrderRefunded"], body: z.strictObject({ refund_reason: ReasonInput }) },
  CancelOrder: { context: "orders", creates: false, emits: ["OrderCancelled"], body: empty },
  GrantCourseAccess: {
    context: "access",
    creates: true,
    emits: ["CourseAccessGranted"],
    body: z.strictObject({ user_id: Id, course_id: Id, expires_at: Timestamp.nullable().optional(), order_id: Id.nullable().optional() }),
  },
  RevokeCourseAccess: { context: "access", creates: false, emits: ["AccessRevoked"], body: z.strictObject({ reason: ReasonInput }) },
  UpdateProgress: { context: "access", creates: false, emits: ["ProgressUpdated", "CourseCompleted"], body: z.strictObject({ progress: Percent }) },
} as const satisfies Record<string, { context: Context; creates: boolean; emits: readonly EventType[]; body: z.ZodType }>;

/** A command type name. */
export type CommandType = keyof typeof CommandDefinitions;
/** The validated body of a command type. */
export type CommandBody<T extends CommandType> = z.infer<(typeof CommandDefinitions)[T]["body"]>;
/** All command types, in contract order. */
export const COMMAND_TYPES = Object.keys(CommandDefinitions) as CommandType[];

/** A command as a decider receives it: type, body, and what the runtime adds (ids, clock). */
export type Command<T extends CommandType = CommandType> = T extends CommandType
  ? { type: T; aggregate_id: string; body: CommandBody<T>; now: string }
  : never;

/** Whether `name` is a command type of `context`. */
export function isCommandOf(context: string, name: string): name is CommandType {
  return Object.hasOwn(CommandDefinitions, name) && CommandDefinitions[name as CommandType].context === context;
}

/** Command types of a context. */
export function commandTypesOf(context: Context): CommandType[] {
  return COMMAND_TYPES.filter((t) => CommandDefinitions[t].context === context);
}
