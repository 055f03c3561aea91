import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isListening } from "../../src/cli/local-nats.js";

let server: Server;
let port: number;
beforeAll(async () => {
  server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("isListening (npm start's look for a NATS server)", () => {
  it("finds one answering among a cluster's servers, not only at the first", async () => {
    // The first server of NATS_URL down: `npm start` said nothing answered and exited.
    expect(await isListening(`nats://127.0.0.1:1,nats://127.0.0.1:${port}`, 500)).toBe(true);
    expect(await isListening("nats://127.0.0.1:1", 500)).toBe(false);
  });

  it("reads a server written without a scheme, as nats.js does", async () => {
    // new URL("127.0.0.1:4222") was a URL of scheme "127.0.0.1:".
    expect(await isListening(`127.0.0.1:${port}`, 500)).toBe(true);
  });
});
