/** Reply shapes of commands and queries (CONTRACT.md §3, §5). */
import { z } from "zod";
import { ERROR_CODES, type ErrorCode, type NerveError } from "./errors.js";
import { EventId, Id } from "./values.js";

/** A successful command reply. */
export const CommandSuccess = z.strictObject({
  ok: z.literal(true),
  aggregate_id: Id,
  aggregate_version: z.number().int().min(0),
  events: z.array(z.strictObject({ event_id: EventId, event_type: z.string() })),
});
export type CommandSuccess = z.infer<typeof CommandSuccess>;

/** The error object inside a failure reply. */
export const ErrorBody = z.strictObject({
  code: z.enum(ERROR_CODES as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

/** A failure reply (commands and queries alike). */
export const ErrorReply = z.strictObject({ ok: z.literal(false), error: ErrorBody });
export type ErrorReply = z.infer<typeof ErrorReply>;

/** A successful query reply, with the query's result schema. */
export const querySuccess = <T extends z.ZodType>(result: T) => z.strictObject({ ok: z.literal(true), result });

/** Builds the failure reply of an error. */
export function errorReply(err: NerveError): ErrorReply {
  const error: ErrorReply["error"] = { code: err.code, message: err.message };
  if (err.details !== undefined) error.details = err.details;
  return { ok: false, error };
}
