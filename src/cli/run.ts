/** `nerve <command> …` as a function: arguments and environment in, lines and an exit code out. */
import { loadConnectionConfig, type ConnectionConfig } from "../config/index.js";
import { CliError, ExitCodes, unknownName } from "./cli-error.js";
import { commandHelp, parseCommandArgs } from "./command.js";
import { COMMANDS } from "./commands/index.js";
import { connectCli } from "./connect.js";

/** Where a run reads its configuration and writes its lines. */
export interface CliIo {
  env: Record<string, string | undefined>;
  /** One line of output (stdout). */
  out(line: string): void;
  /** One line of notes and errors (stderr). */
  err(line: string): void;
  /** Resolves when the user asks to stop (Ctrl-C): `tail` ends then. */
  interrupted: Promise<void>;
}

/** The CLI's usage. */
export const USAGE = `usage: npm run nerve -- <command> [arguments] [options]

commands:
${[...COMMANDS.values()].map((c) => `  ${`${c.name} ${c.args}`.padEnd(34)} ${c.summary}`).join("\n")}

\`npm run nerve -- <command> --help\` (or \`help <command>\`) describes each.

Connection: as \`npm start\` connects — NATS_URL (default nats://127.0.0.1:4222) and the credentials
in NATS_USER and NATS_PASSWORD, or NATS_CREDS. With none set and a server that asks for some (the
nats-server \`npm start\` started with the repository's nats.conf), nats.conf's development user
\`nerve\` is used, as \`npm start\` does; never when NODE_ENV=production. Replies come on the service's
inbox _INBOX_nerve; with another user's credentials set that user's prefix in NATS_INBOX_PREFIX
(\`_INBOX\` for nats.conf's client user: send and history). Nothing reads the database.

exit codes: 0 done (status: healthy); 1 an error reply, a failed operation, or status unhealthy;
            2 bad usage (unknown command, option or name, a bad argument); 3 NATS unreachable or
            the credentials refused; 130 stopped by Ctrl-C (a replay goes on in the service).`;

/** Runs one command line; resolves with its exit code, a failure reported on `err`. */
export async function runNerve(argv: string[], io: CliIo): Promise<number> {
  try {
    return await run(argv, io);
  } catch (err) {
    io.err(err instanceof CliError ? err.message : `nerve: ${(err as Error)?.stack ?? err}`);
    return err instanceof CliError ? err.exitCode : ExitCodes.Failed;
  }
}

async function run(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    const about = name === "help" && rest[0] ? COMMANDS.get(rest[0]) : undefined;
    if (name === "help" && rest[0] && !about) throw unknownName("command", rest[0], [...COMMANDS.keys()]);
    io.out(about ? commandHelp(about) : USAGE);
    return name ? ExitCodes.Ok : ExitCodes.Usage;
  }
  const cmd = COMMANDS.get(name);
  if (!cmd) throw unknownName("command", name, [...COMMANDS.keys()]);
  const { positionals, values, help } = parseCommandArgs(cmd, rest);
  if (help) {
    io.out(commandHelp(cmd));
    return ExitCodes.Ok;
  }
  cmd.check?.(positionals, values);
  let config: ConnectionConfig;
  try {
    config = loadConnectionConfig(io.env);
  } catch (err) {
    throw new CliError((err as Error).message, ExitCodes.Usage);
  }
  const nc = await connectCli(config);
  try {
    const running = cmd.run({ nc, config, print: io.out, warn: io.err, interrupted: io.interrupted }, positionals, values);
    if (cmd.endsOnInterrupt) return await running;
    // Ctrl-C ends any other command at once (main.ts took the signal, so nothing else would).
    running.catch(() => undefined);
    return await Promise.race([running, io.interrupted.then(() => ExitCodes.Interrupted)]);
  } finally {
    await nc.close().catch(() => undefined);
  }
}
