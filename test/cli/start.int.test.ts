import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { command, freePort, startNatsServer, startServiceProcess, tempSqlitePath, until, type ServiceProcess } from "../support/index.js";

const root = join(import.meta.dirname, "..", "..");

function run(env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], { cwd: root, env: { ...process.env, ...env } });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("exit", (code) => resolve({ code, out }));
  });
}

describe("npm start", () => {
  /**
   * The service on a nats-server of the repository's nats.conf and a temporary SQLite file (with `env`), and a
   * connection as nats.conf's `client` user (which may only send commands and queries); all stopped after `test`.
   */
  async function onRepositoryNatsConf(env: Record<string, string>, probeAs: { user: string; pass: string } | undefined, test: (service: ServiceProcess, client: NatsConnection) => Promise<void>): Promise<void> {
    const [nats, db] = await Promise.all([startNatsServer({ config: join(root, "nats.conf") }), tempSqlitePath()]);
    let service: ServiceProcess | undefined;
    let client: NatsConnection | undefined;
    try {
      service = await startServiceProcess({ env: { NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: "0", LOG_LEVEL: "info", ...env }, ...(probeAs ? { probeAs } : {}) });
      client = await connect({ servers: nats.url, user: "client", pass: "client-dev", noAsyncTraces: true });
      await test(service, client);
    } finally {
      await client?.close();
      await service?.kill9();
      await nats.stop();
      await db.cleanup();
    }
  }

  it("serves commands through the repository's nats.conf: the partition mapping routes them to its pcmd.<p> subscriptions", async () => {
    // nats.conf's development user of the service.
    await onRepositoryNatsConf({ NATS_USER: "nerve", NATS_PASSWORD: "nerve-dev" }, undefined, async (service, client) => {
      await until("the routing probe has run", () => service.output().includes('"routing":'), 10_000);
      expect(service.output()).toContain('"routing":"mapped"');
      const r = await command(client, "users", "RegisterUser", "u-start", { email: "u-start@example.com", name: "Start" }, { timeout: 10_000 });
      expect(r.body).toMatchObject({ ok: true, aggregate_id: "u-start", aggregate_version: 1 });
      expect(await service.stop(), service.output()).toBe(0);
    });
  }, 60_000);

  it("connects as nats.conf's development user to a server that asks for credentials when none are set (was: Authorization Violation)", async () => {
    await onRepositoryNatsConf({}, { user: "nerve", pass: "nerve-dev" }, async (service, client) => {
      expect(service.output()).toContain("connecting as nats.conf's development user");
      const r = await command(client, "users", "RegisterUser", "u-dev", { email: "u-dev@example.com", name: "Dev" }, { timeout: 10_000 });
      expect(r.body).toMatchObject({ ok: true, aggregate_version: 1 });
      expect(await service.stop(), service.output()).toBe(0);
    });
  }, 60_000);

  it("exits with a clear message naming both remedies when nothing answers at NATS_URL", async () => {
    const port = await freePort();
    const db = await tempSqlitePath();
    const { code, out } = await run({ NATS_URL: `nats://127.0.0.1:${port}`, NERVE_DB: `sqlite:${db.path}`, LOG_LEVEL: "info" }).finally(() => db.cleanup());
    expect(code).toBe(1);
    expect(out).toContain(`nothing answers at NATS_URL=nats://127.0.0.1:${port}`);
    expect(out).toContain("nats-server -c nats.conf");
    expect(out).toContain("apt-get install nats-server");
  });

  it("refuses a bad configuration, naming each bad variable", async () => {
    const { code, out } = await run({ NERVE_DB: "mysql://x", NERVE_HTTP_PORT: "99999", NODE_ENV: "production" });
    expect(code).toBe(2);
    expect(out).toContain("NERVE_DB");
    expect(out).toContain("NERVE_HTTP_PORT");
    expect(out).toContain("NERVE_JWT_SECRET: is required when NODE_ENV=production");
  });
});
