import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { JetStreamUnavailableError, START_RETRY_MS, ensureStreams } from "../../src/nats/index.js";
import { exited, killOnExit } from "../support/children.js";
import { captureLog, freePort, natsServerBinary, startNatsServer, tempSqlitePath, type NatsServerHandle } from "../support/index.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, noAsyncTraces: true });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("event streams", () => {
  it("are created once and accepted as they are on the next start", async () => {
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm);
    await ensureStreams(jsm);
    const names: string[] = [];
    for await (const s of jsm.streams.list()) names.push(s.config.name);
    expect(names.sort()).toEqual(["EVENTS_ACCESS", "EVENTS_COURSES", "EVENTS_ORDERS", "EVENTS_POLICIES", "EVENTS_USERS"]);
  });

  it("refuse to start the service against a stream whose config conflicts with the contract", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete("EVENTS_ORDERS");
    await jsm.streams.add({ name: "EVENTS_ORDERS", subjects: ["events.orders.>"], storage: "memory" as never });
    const db = await tempSqlitePath();
    onTestFinished(() => db.cleanup());
    // Port 0: the default 8080 may be anyone's on a shared machine. A start that wrongly succeeds is stopped at once.
    const err = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: "0" }), createLogger("silent")).then(
      (nerve) => nerve.stop(),
      (e) => e,
    );
    expect(String(err)).toMatch(/stream EVENTS_ORDERS conflicts with the contract: storage memory ≠ file/);
  });
});

/** A nats-server on `port` with `args`, once it accepts connections. */
async function launch(port: number, args: string[]): Promise<ChildProcess> {
  const proc = spawn(natsServerBinary(), ["-a", "127.0.0.1", "-p", String(port), ...args], { stdio: "ignore" });
  killOnExit(proc);
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const up = await new Promise<boolean>((resolve) => {
      const sock = createConnection({ host: "127.0.0.1", port }, () => {
        sock.destroy();
        resolve(true);
      });
      sock.once("error", () => resolve(false));
    });
    if (up) return proc;
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error(`nats-server ${args.join(" ")} did not listen on ${port}`);
}

describe("a JetStream that is not answering yet", () => {
  it("is waited for at start, logging each retry, up to a bound; once it answers, the streams are made", async () => {
    // A server without JetStream answers every JetStream request with no responders, which nats.js
    // reports as "jetstream is not enabled" — as a cluster does while it elects a stream's leader.
    const port = await freePort();
    const store = await mkdtemp(join(tmpdir(), "nerve-nats-"));
    let server = await launch(port, []);
    const nc = await connect({ servers: `nats://127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 100, noAsyncTraces: true });
    try {
      const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 1000 });

      const bounded = captureLog("warn");
      const t0 = Date.now();
      const err = await ensureStreams(jsm, { logger: bounded.logger, retryMs: 1500 }).catch((e: unknown) => e);
      // Which bound it gave up by, not a speed: its own 1.5 s, not the start-up default of START_RETRY_MS (30 s).
      expect(Date.now() - t0).toBeLessThan(START_RETRY_MS / 2);
      expect(err).toBeInstanceOf(JetStreamUnavailableError);
      expect((err as Error).message).toMatch(/^ensuring the event streams: JetStream still unavailable after [\d.]+ s and \d+ attempts \(last: jetstream is not enabled\)$/);
      expect(bounded.lines.length).toBeGreaterThanOrEqual(2);
      expect(bounded.lines[0]).toMatchObject({ msg: "ensuring the event streams: JetStream is unavailable for now (a leader election?); retrying", err: "jetstream is not enabled", attempt: 1 });

      const log = captureLog("warn");
      const ensuring = ensureStreams(jsm, { logger: log.logger, retryMs: 20_000 });
      // Handled at once as well: a failure before it is awaited must not leave its rejection unhandled.
      ensuring.catch(() => undefined);
      await expect.poll(() => log.lines.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(2);
      server.kill("SIGKILL");
      await exited(server);
      server = await launch(port, ["-js", "-sd", store]);
      await ensuring;
      const names: string[] = [];
      for await (const s of jsm.streams.list()) names.push(s.config.name);
      expect(names).toHaveLength(5);
    } finally {
      await nc.close();
      server.kill("SIGKILL");
      await exited(server);
      await rm(store, { recursive: true, force: true });
    }
  });
});
