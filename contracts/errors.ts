/** The one catalogue of error codes (CONTRACT.md §3) and the error class that carries them. */

/** Every error code of the contract, with its NATS service status and whether a retry can help. */
export const ErrorCatalogue = {
  invalid_request: { status: 400, retryable: false, doc: "undecodable body, schema violation, bad id, unknown command" },
  not_found: { status: 404, retryable: false, doc: "the aggregate does not exist (for a command that needs it)" },
  conflict: { status: 409, retryable: false, doc: "it exists already, or a unique value (email) is taken" },
  rule_violated: { status: 422, retryable: false, doc: "a business rule forbids it" },
  unavailable: { status: 503, retryable: true, doc: "overloaded or shutting down: safe to retry" },
  internal: { status: 500, retryable: false, doc: "a bug; logged with the correlation id" },
} as const;

/** One of the contract's error codes. */
export type ErrorCode = keyof typeof ErrorCatalogue;

/** The error codes, as a const object for use in code (`ErrorCodes.NotFound`). */
export const ErrorCodes = {
  InvalidRequest: "invalid_request",
  NotFound: "not_found",
  Conflict: "conflict",
  RuleViolated: "rule_violated",
  Unavailable: "unavailable",
  Internal: "internal",
} as const satisfies Record<string, ErrorCode>;

/** All error codes, in catalogue order. */
export const ERROR_CODES = Object.keys(ErrorCatalogue) as ErrorCode[];

/** An error that the runtime turns into a contract error reply; `retryable` says whether a retry can help. */
export class NerveError extends Error {
  override readonly name = "NerveError";
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { details?: Record<string, unknown>; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }

  /** The NATS service status code of this error. */
  get status(): number {
    return ErrorCatalogue[this.code].status;
  }

  /** Whether retrying the same request can succeed. */
  get retryable(): boolean {
    return ErrorCatalogue[this.code].retryable;
  }
}

/** Whether `err` is a NerveError (optionally with the given code). */
export function isNerveError(err: unknown, code?: ErrorCode): err is NerveError {
  return err instanceof NerveError && (code === undefined || err.code === code);
}

/** Shorthand constructors, one per code. */
export const errors = {
  invalidRequest: (message: string, details?: Record<string, unknown>) => new NerveError("invalid_request", message, { details }),
  notFound: (message: string, details?: Record<string, unknown>) => new NerveError("not_found", message, { details }),
  conflict: (message: string, details?: Record<string, unknown>) => new NerveError("conflict", message, { details }),
  ruleViolated: (message: string, details?: Record<string, unknown>) => new NerveError("rule_violated", message, { details }),
  unavailable: (message: string, details?: Record<string, unknown>) => new NerveError("unavailable", message, { details }),
  internal: (message: string, cause?: unknown, details?: Record<string, unknown>) => new NerveError("internal", message, { cause, details }),
} as const;
