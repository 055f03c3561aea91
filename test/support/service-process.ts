/** Runs the real service (`node --max-semi-space-size=64 --max-old-space-size=768 --no-page-promotion --no-allocation-site-pretenuring --import tsx src/main.ts`, as `npm start` does) as a child process, for crash tests. */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { exited, gone as goneChild, killOnExit, terminate } from "./children.js";

/** Options of {@link startServiceProcess}. */
export interface ServiceProcessOptions {
  /** Environment of the child, on top of this process's (NATS_URL, NERVE_DB, LOG_LEVEL, …). */
  env: Record<string, string>;
  /** How long to wait until the service answers `$SRV.PING.nerve` (default 20 s). */
  readyTimeoutMs?: number;
  /** Who asks `$SRV.PING.nerve` (default: the child's NATS_USER and NATS_PASSWORD). */
  probeAs?: { user: string; pass: string };
  /** Called with each whole line of the child's stdout and stderr (its JSON log lines), all of them, not only the tail kept for {@link ServiceProcess.output}. */
  onLine?: (line: string) => void;
}

/** A running service child process. */
export interface ServiceProcess {
  /** Pid of the child. */
  readonly pid: number;
  /** The tail of the child's stdout and stderr, for failure messages. */
  output(): string;
  /** SIGKILL (a crash at an arbitrary moment); resolves once the child is gone. */
  kill9(): Promise<void>;
  /** SIGTERM (orderly shutdown); resolves with the exit code once the child is gone. */
  stop(timeoutMs?: number): Promise<number | null>;
  /** SIGSTOP: the process freezes where it is (timers, sockets, transactions and all). */
  pause(): void;
  /** SIGCONT after {@link pause}. */
  resume(): void;
  /** Whether the child has exited. */
  readonly exited: boolean;
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const OUTPUT_TAIL = 16_000;

/** V8's heap flags of `npm start` (package.json), the systemd unit and the Dockerfile: every service process runs with them. */
export const SERVICE_NODE_FLAGS = ["--max-semi-space-size=64", "--max-old-space-size=768", "--no-page-promotion", "--no-allocation-site-pretenuring"] as const;

/**
 * Environment of every service process (npm start, the systemd unit, the Dockerfile): glibc's malloc with
 * two arenas instead of up to eight per core, so memory freed by one thread (the libuv pool running SQLite,
 * the write worker) is reused by the next instead of growing an arena of its own.
 */
export const SERVICE_ENV = { MALLOC_ARENA_MAX: "2" } as const;

/**
 * The allocator of the deployed service (systemd unit and Dockerfile; not npm start, which must run on a
 * machine without it): jemalloc, preloaded, with its background thread returning freed pages to the
 * system after its decay time. glibc's malloc keeps the pages freed inside its main heap, so the memory
 * outside V8's heap only ever rose to each new peak (see README, "Memory outside the V8 heap").
 */
export const SERVICE_ALLOCATOR = { library: "libjemalloc.so.2", env: { MALLOC_CONF: "background_thread:true" } } as const;

/** Where Debian's libjemalloc2 puts the library on this machine, if it is installed. */
const DEBIAN_JEMALLOC = `/usr/lib/${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu/${SERVICE_ALLOCATOR.library}`;
export const JEMALLOC_PATH = existsSync(DEBIAN_JEMALLOC) ? DEBIAN_JEMALLOC : undefined;

/** The environment the tests and benches give a service process: the deployed one where this machine has jemalloc, else npm start's. */
export function serviceProcessEnv(): Record<string, string> {
  return { ...SERVICE_ENV, ...(JEMALLOC_PATH && { LD_PRELOAD: JEMALLOC_PATH, ...SERVICE_ALLOCATOR.env }) };
}

/** Which allocator a running process has loaded: jemalloc when its library is mapped, else the C library's. */
export function allocatorOf(pid: number): "jemalloc" | "glibc" | "unknown" {
  try {
    return readFileSync(`/proc/${pid}/maps`, "utf8").includes(SERVICE_ALLOCATOR.library) ? "jemalloc" : "glibc";
  } catch {
    return "unknown";
  }
}

/** Spawns the service with `env` and resolves once it answers on NATS as the service `nerve`. */
export async function startServiceProcess(opts: ServiceProcessOptions): Promise<ServiceProcess> {
  const url = opts.env.NATS_URL;
  if (!url) throw new Error("startServiceProcess needs NATS_URL in env");
  let output = "";
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, "--import", "tsx", "src/main.ts"], {
    cwd: root,
    env: { ...process.env, ...serviceProcessEnv(), ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  killOnExit(child);
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-OUTPUT_TAIL);
  };
  const lines = (keepLine: (line: string) => void) => {
    let partial = "";
    return (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split("\n");
      partial = parts.pop()!;
      for (const line of parts) keepLine(line);
    };
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  // Each stream split apart: a line of stdout and one of stderr may arrive interleaved.
  if (opts.onLine) {
    child.stdout?.on("data", lines(opts.onLine));
    child.stderr?.on("data", lines(opts.onLine));
  }
  child.once("error", (err) => keep(Buffer.from(`\nspawn error: ${err.message}`)));

  const gone = () => goneChild(child);
  const handle: ServiceProcess = {
    get pid() {
      return child.pid ?? -1;
    },
    output: () => output,
    get exited() {
      return gone();
    },
    pause: () => void (gone() || child.kill("SIGSTOP")),
    resume: () => void (gone() || child.kill("SIGCONT")),
    async kill9() {
      if (!gone()) {
        child.kill("SIGKILL");
        child.kill("SIGCONT"); // a paused child dies only once it runs
      }
      await exited(child);
    },
    stop: (timeoutMs = 20_000) => terminate(child, timeoutMs),
  };

  // As the service: with its credentials, where the server asks for them (the repository's nats.conf).
  const probe = await connect({ servers: url, user: opts.probeAs?.user ?? opts.env.NATS_USER, pass: opts.probeAs?.pass ?? opts.env.NATS_PASSWORD, noAsyncTraces: true, reconnect: false });
  try {
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
    while (Date.now() < deadline) {
      if (gone()) throw new Error(`service exited (${child.exitCode ?? child.signalCode}) during start:\n${output}`);
      try {
        await probe.request("$SRV.PING.nerve", new Uint8Array(), { timeout: 500 });
        return handle;
      } catch {
        // no responders yet: still starting
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`service did not answer $SRV.PING.nerve within ${opts.readyTimeoutMs ?? 20_000} ms:\n${output}`);
  } catch (err) {
    await handle.kill9();
    throw err;
  } finally {
    await probe.close();
  }
}
