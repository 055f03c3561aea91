/**
 * What the NATS connection logs of its status events, against a real nats-server: a permissions
 * violation with the server's message (not a bare {"nats":"error"}), and lame duck mode with the server.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats } from "../../src/nats/index.js";
import { captureLog, startNatsServer, until, type CapturedLog, type NatsServerHandle } from "../support/index.js";

// A user who may publish anything but forbidden.>. Lame duck mode waits its grace period (10 s by
// default) before it closes anything, a stop too.
const CONF = `lame_duck_grace_period: "1s"
accounts {
  A {
    jetstream: enabled
    users: [{ user: limited, password: limited-pw, permissions: { publish: { deny: ["forbidden.>"] } } }]
  }
}
`;

let dir: string;
let server: NatsServerHandle;
let log: CapturedLog;
let nc: NatsConnection;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nerve-nats-status-"));
  await writeFile(join(dir, "nats.conf"), CONF);
  server = await startNatsServer({ config: join(dir, "nats.conf") });
  log = captureLog("info");
  nc = await connectNats({ url: server.url, user: "limited", password: "limited-pw" }, log.logger);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

const statusLines = () => log.lines.filter((l) => l.msg === "nats status");

describe("the connection's status log", () => {
  it("logs a permissions violation as an error with the server's message", async () => {
    nc.publish("forbidden.x");
    await nc.flush();
    await until("the violation is logged", () => statusLines().some((l) => l.nats === "error"), 5_000);
    const line = statusLines().find((l) => l.nats === "error")!;
    expect(line.level).toBe(50);
    expect(String(line.error)).toMatch(/Permissions Violation for Publish to "forbidden\.x"/i);
  });

  it("logs lame duck mode with the server", async () => {
    process.kill(server.pid, "SIGUSR2"); // nats-server's signal for lame duck mode
    await until("lame duck mode is logged", () => statusLines().some((l) => l.nats === "ldm"), 10_000);
    const line = statusLines().find((l) => l.nats === "ldm")!;
    expect(line.level).toBe(40);
    expect(String(line.server)).toContain(String(server.port));
  });
});
