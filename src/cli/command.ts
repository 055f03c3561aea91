/** What a `nerve` command is: its usage, help and options, parsed with node:util's parseArgs. */
import type { NatsConnection } from "@nats-io/nats-core";
import { parseArgs } from "node:util";
import type { ConnectionConfig } from "../config/index.js";
import { usageError } from "./cli-error.js";

/** One option of a command, with its line of help. */
export interface CliOption {
  type: "string" | "boolean";
  short?: string;
  /** The value's name in the help (`--max-lag <n>`). */
  value?: string;
  description: string;
}

/** What a command runs with. */
export interface CliContext {
  nc: NatsConnection;
  config: ConnectionConfig;
  /** Writes one line of the command's output (stdout). */
  print(line: string): void;
  /** Writes one line of notes and errors beside the output (stderr). */
  warn(line: string): void;
  /** Resolves when the user asks to stop (Ctrl-C, SIGTERM). */
  interrupted: Promise<void>;
}

/** Parsed option values. */
export type OptionValues = Record<string, string | boolean | undefined>;

/** A command of the CLI. */
export interface CliCommand {
  name: string;
  /** Its positional arguments as the usage line shows them, e.g. `<context> <aggregate_id>`. */
  args: string;
  /** How many positionals it takes. */
  arity: { min: number; max: number };
  /** One line for the command list. */
  summary: string;
  /** The rest of its `--help`: what it prints, its rules, examples. */
  help: string;
  options: Record<string, CliOption>;
  /**
   * Checks the arguments without a connection, throwing a usage error for a bad one: run before
   * connecting, so a mistyped argument is exit 2 whether NATS answers or not. `run` may rely on it.
   */
  check?(positionals: string[], values: OptionValues): void;
  /** Runs the command; resolves with the exit code. */
  run(ctx: CliContext, positionals: string[], values: OptionValues): Promise<number>;
  /** It ends by itself on Ctrl-C (`interrupted`); any other command is ended there with {@link ExitCodes.Interrupted}. */
  endsOnInterrupt?: true;
}

const HELP_OPTION: CliOption = { type: "boolean", short: "h", description: "this help" };

/** Parses a command's arguments; bad usage throws a usage error naming the command. */
export function parseCommandArgs(cmd: CliCommand, argv: string[]): { positionals: string[]; values: OptionValues; help: boolean } {
  const options = Object.fromEntries(Object.entries({ ...cmd.options, help: HELP_OPTION }).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}) }]));
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError(`${cmd.name}: ${(err as Error).message}`, cmd.name);
  }
  const values = parsed.values as OptionValues;
  if (values.help) return { positionals: parsed.positionals, values, help: true };
  const n = parsed.positionals.length;
  if (n < cmd.arity.min || n > cmd.arity.max) {
    throw usageError(`${cmd.name} takes ${cmd.args || "no arguments"}${n > cmd.arity.max ? `; got ${n}: ${parsed.positionals.join(" ")}` : ""}`, cmd.name);
  }
  return { positionals: parsed.positionals, values, help: false };
}

/** The `--help` text of a command. */
export function commandHelp(cmd: CliCommand): string {
  const opts = Object.entries({ ...cmd.options, help: HELP_OPTION }).map(([k, o]) => [`${o.short ? `-${o.short}, ` : "    "}--${k}${o.value ? ` <${o.value}>` : ""}`, o.description] as const);
  const width = Math.max(...opts.map(([flag]) => flag.length));
  return [
    `usage: npm run nerve -- ${cmd.name}${cmd.args ? ` ${cmd.args}` : ""} [options]`,
    "",
    cmd.summary,
    "",
    cmd.help.trimEnd(),
    "",
    "options:",
    ...opts.map(([flag, d]) => `  ${flag.padEnd(width)}  ${d}`),
  ].join("\n");
}

/**
 * A numeric option: its value, or `def` when absent; anything else is a usage error. Written in plain
 * decimal (`12`, `0.5`), within JavaScript's exact integers: `Number` also read `0x10` as 16 and `1e300`.
 */
export function numberOption(cmd: string, values: OptionValues, name: string, def: number): number {
  const v = values[name];
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== "string" || !/^[0-9]+(\.[0-9]+)?$/.test(v) || n > Number.MAX_SAFE_INTEGER) throw usageError(`--${name} must be a number ≥ 0 in plain decimal, not ${JSON.stringify(v)}`, cmd);
  return n;
}
