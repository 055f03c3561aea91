/** The gateway's port is its own: no other process can share it through SO_REUSEPORT. */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { exited, killOnExit } from "../support/children.js";
import { freePort, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";
import { startTestGateway } from "./support.js";

let nats: NatsServerHandle;
useNatsWithStreams((h) => (nats = h.nats));

describe("listening", () => {
  it("fails to start on a port another process serves with uWS's default SO_REUSEPORT, instead of sharing its connections", async () => {
    // Another process listens the way uWS does by default (SO_REUSEPORT on), and reports its port.
    const uwsPath = createRequire(import.meta.url).resolve("uWebSockets.js");
    const wanted = await freePort();
    const script = `const u = require(${JSON.stringify(uwsPath)}); u.App().get("/*", (r) => r.end("other")).listen("127.0.0.1", ${wanted}, (s) => console.log(s ? u.us_socket_local_port(s) : "failed"));`;
    const other = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    killOnExit(other);
    try {
      const port = await new Promise<number>((resolve, reject) => {
        other.stdout!.once("data", (d: Buffer) => (/^\d+/.test(d.toString()) ? resolve(Number(d.toString().trim())) : reject(new Error(d.toString()))));
        other.once("exit", (code) => reject(new Error(`listener exited ${code}`)));
      });
      await expect(startTestGateway(nats.url, { port })).rejects.toThrow(`gateway could not listen on 127.0.0.1:${port}`);
      // On a port of its own it starts and serves.
      const gw = await startTestGateway(nats.url);
      try {
        expect(gw.port).not.toBe(port);
        expect(await (await fetch(`http://127.0.0.1:${gw.port}/healthz`)).text()).toBe("ok");
      } finally {
        await gw.close();
      }
    } finally {
      other.kill("SIGKILL");
      await exited(other);
    }
  });
});
