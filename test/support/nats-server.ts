import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve, sep } from "node:path";
import { exited, killOnExit } from "./children.js";

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Path to a nats.conf run with `-c`; its ports and store dir are overridden. */
  config?: string;
  /** Extra command-line arguments appended after the launcher's own. */
  args?: string[];
  /** How long to wait for the client port to accept connections (default 10s). */
  startTimeoutMs?: number;
}

/** A running throw-away nats-server owned by one test file. */
export interface NatsServerHandle {
  /** Client URL, e.g. `nats://127.0.0.1:41234`. */
  readonly url: string;
  /** Client port (stable across restart). */
  readonly port: number;
  /** HTTP monitoring port (stable across restart). */
  readonly httpPort: number;
  /** JetStream store dir (kept by kill, removed by stop). */
  readonly storeDir: string;
  /** Pid of the current process (changes on restart). */
  readonly pid: number;
  /** SIGTERM, wait for exit, remove the store dir. */
  stop(): Promise<void>;
  /** SIGKILL, wait for exit, keep the store dir (simulates a crash). */
  kill(): Promise<void>;
  /** Start again on the same ports and store dir, e.g. after kill. */
  restart(): Promise<void>;
}

const FALLBACK_BINARY = "/usr/sbin/nats-server";

/** Finds `nats-server` on PATH, else the Debian package location. */
export function natsServerBinary(): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, "nats-server"))) return join(dir, "nats-server");
  }
  if (existsSync(FALLBACK_BINARY)) return FALLBACK_BINARY;
  throw new Error(`nats-server not found on PATH nor at ${FALLBACK_BINARY}`);
}

/** Asks the OS for a currently free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * Asks the OS for `n` distinct free TCP ports on 127.0.0.1: all are held until every one is known, so none is
 * handed out twice (one after the other, the kernel may give back the port it has just freed).
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (srv) =>
          new Promise<number>((resolve, reject) => {
            srv.unref();
            srv.once("error", reject);
            srv.listen(0, "127.0.0.1", () => {
              const addr = srv.address();
              const port = typeof addr === "object" && addr ? addr.port : 0;
              if (port) resolve(port);
              else reject(new Error("no port assigned"));
            });
          }),
      ),
    );
  } finally {
    await Promise.all(servers.map((srv) => new Promise<void>((done) => (srv.listening ? srv.close(() => done()) : done()))));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: "127.0.0.1", port });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}


// Guards against a config with an absolute store_dir silently sharing state between runs.
async function assertStoreInside(httpPort: number, storeDir: string): Promise<void> {
  const varz = (await (await fetch(`http://127.0.0.1:${httpPort}/varz`)).json()) as {
    jetstream?: { config?: { store_dir?: string } };
  };
  const used = varz.jetstream?.config?.store_dir;
  const abs = used === undefined ? undefined : resolve(storeDir, used);
  if (abs === undefined || !(abs + sep).startsWith(storeDir + sep)) {
    throw new Error(`nats-server store_dir ${String(used)} is outside the temp dir ${storeDir}; make it relative`);
  }
}

/** Starts a private JetStream-enabled nats-server on free ports with a temp store. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const bin = natsServerBinary();
  let [port, httpPort] = (await freePorts(2)) as [number, number];
  const storeDir = await mkdtemp(join(tmpdir(), "nerve-nats-"));
  // Flags after -c win over the file, so a repo config never clashes with a dev server on 4222.
  // nats-server 2.9 rejects -sd when the file also sets store_dir ("Duplicate 'store_dir'"),
  // so in that case we drop -sd and run inside storeDir: a relative store_dir lands in it.
  let useSdFlag = true;
  const args = (): string[] => [
    ...(opts.config ? ["-c", resolve(opts.config)] : []),
    ...["-js", "-a", "127.0.0.1", "-p", String(port), "-m", String(httpPort)],
    ...(useSdFlag ? ["-sd", storeDir] : []),
    ...(opts.args ?? []),
  ];
  const deadlineMs = opts.startTimeoutMs ?? 10_000;
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    let stderr = "";
    const argv = args();
    const proc = spawn(bin, argv, { cwd: storeDir, stdio: ["ignore", "ignore", "pipe"] });
    child = proc;
    killOnExit(proc);
    proc.once("error", (err) => {
      stderr += `\nspawn error: ${err.message}`;
    });
    proc.stderr?.on("data", (chunk: Buffer) => {
      // Keep only the tail: enough to explain a failed start, bounded for chatty servers.
      stderr = (stderr + chunk.toString()).slice(-8_000);
    });
    const deadline = Date.now() + deadlineMs;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) {
        throw new Error(`nats-server exited (${proc.exitCode ?? proc.signalCode}) during start: ${bin} ${argv.join(" ")}\n${stderr}`);
      }
      if (await canConnect(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    proc.kill("SIGKILL");
    await exited(proc);
    throw new Error(`nats-server did not accept connections on ${port} within ${deadlineMs}ms\n${stderr}`);
  };

  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited(child);
  };

  try {
    for (let attempt = 1; ; attempt++) {
      try {
        await launch();
        break;
      } catch (err) {
        if (opts.config && useSdFlag && String(err).includes("Duplicate 'store_dir'")) {
          useSdFlag = false;
        } else if (attempt < 3 && String(err).includes("address already in use")) {
          // Another process took a port between our asking and the server's binding: new ports, at first start only.
          [port, httpPort] = (await freePorts(2)) as [number, number];
        } else throw err;
      }
    }
    await assertStoreInside(httpPort, storeDir);
  } catch (err) {
    await signal("SIGKILL");
    await rm(storeDir, { recursive: true, force: true });
    throw err;
  }

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    httpPort,
    storeDir,
    get pid() {
      return child?.pid ?? -1;
    },
    async stop() {
      await signal("SIGTERM");
      await rm(storeDir, { recursive: true, force: true });
    },
    async kill() {
      await signal("SIGKILL");
    },
    async restart() {
      await signal("SIGTERM");
      await launch();
    },
  };
}
