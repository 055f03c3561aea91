/** `npm run nerve -- <command>`: operator commands against the running service, everything through NATS. */
import { runNerve } from "./run.js";

const interrupted = new Promise<void>((resolve) => {
  process.once("SIGINT", () => resolve());
  process.once("SIGTERM", () => resolve());
});

// An explicit exit: a lingering handle must not keep a finished command alive (stdout is synchronous on Linux).
void runNerve(process.argv.slice(2), {
  env: process.env,
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
  interrupted,
}).then((code) => process.exit(code));
