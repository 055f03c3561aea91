/**
 * The `nerve` CLI under test: as a child process (`node --import tsx src/cli/main.ts …`), so exit
 * codes, streams and Ctrl-C are real, or in this process through the same `runNerve` the child runs
 * (no process start-up: on a loaded machine each child costs seconds).
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { runNerve } from "../../src/cli/index.js";
import { killOnExit } from "../support/children.js";

const root = join(import.meta.dirname, "..", "..");

/** What a finished CLI run left. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr together. */
  out: string;
}

/** A running CLI: its output so far, a wait on it, Ctrl-C. */
export interface RunningCli {
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout (or stderr) matches `re`; rejects after `timeoutMs`. */
  waitFor(re: RegExp, stream?: "stdout" | "stderr", timeoutMs?: number): Promise<void>;
  /** Ctrl-C; resolves with the run once it ended. */
  interrupt(): Promise<CliRun>;
  /** Resolves with the run once it ended. */
  readonly done: Promise<CliRun>;
}

// The CLI reads its configuration from the environment: the test's own NATS variables must not leak in.
function cliEnv(env: Record<string, string>): Record<string, string | undefined> {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of ["NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_CREDS", "NODE_ENV"]) delete base[k];
  return { ...base, ...env };
}

function running(out: { stdout: string; stderr: string }, done: Promise<number | null>, interrupt: () => void): RunningCli {
  const result = done.then((code) => ({ code, stdout: out.stdout, stderr: out.stderr, out: out.stdout + out.stderr }));
  return {
    done: result,
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    waitFor: (re, stream = "stdout", timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const started = Date.now();
        const poll = setInterval(() => {
          if (re.test(out[stream])) resolve();
          else if (Date.now() - started > timeoutMs) reject(new Error(`no ${re} on ${stream} within ${timeoutMs} ms; stdout: ${out.stdout}\nstderr: ${out.stderr}`));
          else return;
          clearInterval(poll);
        }, 20);
      }),
    interrupt() {
      interrupt();
      return result;
    },
  };
}

/** Starts `nerve <args>` as a child process with `env` (NATS_URL, credentials…) on a clean environment. */
export function spawnCli(env: Record<string, string>, ...args: string[]): RunningCli {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: root, env: cliEnv(env) });
  killOnExit(child);
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d) => (out.stdout += d));
  child.stderr.on("data", (d) => (out.stderr += d));
  // "close", not "exit": by then every byte the child wrote has been read.
  const closed = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return running(out, closed, () => child.kill("SIGINT"));
}

/** Runs `nerve <args>` as a child process to its end. */
export function runCli(env: Record<string, string>, ...args: string[]): Promise<CliRun> {
  return spawnCli(env, ...args).done;
}

/** Starts `nerve <args>` in this process. */
export function startInProcess(env: Record<string, string>, ...args: string[]): RunningCli {
  const out = { stdout: "", stderr: "" };
  let interrupt!: () => void;
  const interrupted = new Promise<void>((resolve) => (interrupt = resolve));
  const code = runNerve(args, { env: cliEnv(env), out: (line) => void (out.stdout += `${line}\n`), err: (line) => void (out.stderr += `${line}\n`), interrupted });
  return running(out, code, interrupt);
}

/** Runs `nerve <args>` in this process to its end. */
export function nerve(env: Record<string, string>, ...args: string[]): Promise<CliRun> {
  return startInProcess(env, ...args).done;
}
