/** The CLI's failures, each with the exit code a script sees. */

/** Exit codes of `nerve` (listed in `--help`). */
export const ExitCodes = {
  /** Done; for `status`: healthy. */
  Ok: 0,
  /** An error reply, a failed operation, or (`status`) something unhealthy. */
  Failed: 1,
  /** Bad usage: unknown command, option or name, a missing or malformed argument. */
  Usage: 2,
  /** NATS unreachable or the credentials refused. */
  Connection: 3,
  /** Stopped by Ctrl-C (SIGINT) or SIGTERM before it finished (128 + SIGINT, as shells report it). */
  Interrupted: 130,
} as const;

/** A failure the CLI reports as one message (no stack) and ends with `exitCode`. */
export class CliError extends Error {
  override readonly name = "CliError";

  constructor(
    message: string,
    readonly exitCode: number = ExitCodes.Failed,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Bad usage: the message, then how to get the command's help. */
export function usageError(message: string, command?: string): CliError {
  return new CliError(`${message}\nsee: npm run nerve -- ${command ? `${command} ` : ""}--help`, ExitCodes.Usage);
}

/** `unknown <what> <name>; known: a, b, c` as a usage error. */
export function unknownName(what: string, name: string, known: readonly string[], command?: string): CliError {
  return usageError(`unknown ${what} ${JSON.stringify(name)}; known: ${known.join(", ")}`, command);
}
