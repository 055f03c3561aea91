/** The gateway bench's delivery-server child processes, and the fd limit they run under. */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServerCommand, ServerReply } from "./gateway-server.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The soft and hard limits on open files (`ulimit -n`). */
export function fdLimit(): { soft: number; hard: number } {
  const [soft, hard] = execFileSync("sh", ["-c", "ulimit -Sn; ulimit -Hn"]).toString().trim().split("\n");
  const n = (s: string | undefined) => (s === "unlimited" ? 1 << 20 : Number(s));
  return { soft: n(soft), hard: n(hard) };
}

/** A delivery server child process (`uws` or `ws`), with its fd limit raised to `fds`. */
export class ServerChild {
  readonly #child: ChildProcess;
  readonly #replies: ServerReply[] = [];
  #wake: (() => void) | undefined;

  constructor(mode: "uws" | "ws", natsUrl: string, fds: number, secret: string) {
    const cmd = `ulimit -n ${fds}; exec "${process.execPath}" --expose-gc --import tsx bench/gateway-server.ts ${mode}`;
    this.#child = spawn("sh", ["-c", cmd], { cwd: ROOT, env: { ...process.env, NATS_URL: natsUrl, BENCH_JWT_SECRET: secret }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const child = this.#child;
    const orphanGuard = () => child.kill("SIGKILL");
    process.once("exit", orphanGuard);
    child.once("exit", () => process.off("exit", orphanGuard));
    this.#child.on("message", (m: ServerReply) => {
      this.#replies.push(m);
      this.#wake?.();
    });
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  async next<T extends ServerReply["type"]>(type: T, ms = 120_000): Promise<Extract<ServerReply, { type: T }>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.#replies.findIndex((r) => r.type === type);
      if (i >= 0) return this.#replies.splice(i, 1)[0] as Extract<ServerReply, { type: T }>;
      if (this.#child.exitCode !== null || Date.now() > deadline) throw new Error(`bench server: no ${type} (exit ${this.#child.exitCode})`);
      await new Promise<void>((r) => {
        this.#wake = r;
        setTimeout(r, 200);
      });
    }
  }

  send(m: ServerCommand): void {
    this.#child.send(m);
  }

  async rss(): Promise<number> {
    this.send({ type: "rss" });
    return (await this.next("rss")).rss;
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    this.send({ type: "stop" });
    const exited = new Promise((r) => this.#child.once("exit", r));
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

