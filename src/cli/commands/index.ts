/** Every command of `nerve`, in the order `--help` lists them. */
import type { CliCommand } from "../command.js";
import { deadLetters, lag, replay, retryDeadLetter } from "./consumers.js";
import { history } from "./history.js";
import { send } from "./send.js";
import { status } from "./status.js";
import { tail } from "./tail.js";

/** The commands by name. */
export const COMMANDS: ReadonlyMap<string, CliCommand> = new Map([status, tail, history, send, lag, replay, deadLetters, retryDeadLetter].map((c) => [c.name, c]));

