/** Development convenience: start a nats-server with the repository's nats.conf when none answers. */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { delimiter, join } from "node:path";
import { natsServers } from "../config/nats-url.js";
import { errors as natsErrors } from "@nats-io/nats-core";

/** The development user of the repository's nats.conf that `npm start` connects as when it started that server itself. */
export const DEV_NATS_USER = { user: "nerve", password: "nerve-dev" } as const;

/** Whether `err` (or its cause) is NATS refusing the connection's credentials (none given, or wrong ones). */
export function isNatsAuthError(err: unknown): boolean {
  return err instanceof natsErrors.AuthorizationError || (err as Error | undefined)?.cause instanceof natsErrors.AuthorizationError;
}

/**
 * Starts the service with `start`; should that fail, stops the nats-server this process started for it
 * (`local`) before the failure goes on: a failed `npm start` (its port taken, say) left it running, and the
 * next `npm start`, finding a server there, connected without credentials and was refused.
 */
export async function startBeside<T>(start: () => Promise<T>, local: { kill(signal: NodeJS.Signals): unknown } | undefined): Promise<T> {
  try {
    return await start();
  } catch (err) {
    local?.kill("SIGTERM");
    throw err;
  }
}

/** The configuration with nats.conf's development user where no credentials are set. */
export function withDevelopmentUser<C extends { NATS_USER?: string | undefined; NATS_PASSWORD?: string | undefined }>(config: C): C {
  return { ...config, NATS_USER: config.NATS_USER ?? DEV_NATS_USER.user, NATS_PASSWORD: config.NATS_PASSWORD ?? DEV_NATS_USER.password };
}

/**
 * Whether something accepts TCP connections at one of NATS_URL's servers (any: with the first of a
 * cluster's down, `npm start` refused to start; a scheme-less `127.0.0.1:4222`, which nats.js takes, was
 * read as a URL of scheme `127.0.0.1:`).
 */
export async function isListening(url: string, timeoutMs = 1000): Promise<boolean> {
  const answers = await Promise.all(natsServers(url).map((s) => accepts(s.host, s.port, timeoutMs)));
  return answers.includes(true);
}

function accepts(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/** The nats-server binary on the PATH (or Debian's /usr/sbin), if any. */
export function findNatsServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin"];
  for (const d of dirs) {
    const p = join(d, "nats-server");
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Starts `nats-server -c <config>` and waits until it listens at `url`. */
export async function startLocalNats(binary: string, config: string, url: string, cwd: string): Promise<ChildProcess> {
  const child = spawn(binary, ["-c", config], { cwd, stdio: ["ignore", "ignore", "inherit"] });
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with code ${child.exitCode}`);
    if (await isListening(url, 200)) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  throw new Error("nats-server did not start within 10 s");
}
