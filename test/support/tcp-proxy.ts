/**
 * A TCP proxy in front of a real server (PostgreSQL, say), for outages a test can switch on and off:
 * `cut()` drops every connection through it and refuses new ones, as a server that went away; `restore()`
 * accepts again on the same port; `loseAnswerTo()` lets one request through and loses what comes back,
 * as a connection cut (a failover, a network fault) between a COMMIT and its answer.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { freePort } from "./nats-server.js";

export interface TcpProxy {
  /** The port clients connect to (127.0.0.1). */
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  /**
   * Arms a lost answer: the next chunk a client sends that contains `marker` (`COMMIT`, say) reaches the
   * server, but nothing the server sends back on that connection reaches the client, and the connection
   * is dropped `dropAfterMs` later. Resolves once the chunk has been handed to the server's socket.
   */
  loseAnswerTo(marker: string, dropAfterMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** What a proxy may change: `startup` rewrites the client's first message (PostgreSQL's StartupMessage), whole. */
export interface TcpProxyOptions {
  startup?: (message: Buffer) => Buffer;
}

export async function tcpProxy(target: { host: string; port: number }, opts: TcpProxyOptions = {}): Promise<TcpProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let armed: { marker: Buffer; dropAfterMs: number; passed: () => void } | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = createConnection(target);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on("close", () => sockets.delete(sock));
          sock.on("error", () => undefined);
        }
        let mute = false;
        const forward = (chunk: Buffer) => {
          const lose = armed && chunk.includes(armed.marker) ? armed : undefined;
          if (!lose) return void upstream.write(chunk);
          armed = undefined;
          mute = true;
          upstream.write(chunk, () => lose.passed());
          setTimeout(() => {
            client.destroy();
            upstream.destroy();
          }, lose.dropAfterMs);
        };
        upstream.on("data", (chunk: Buffer) => {
          if (!mute) client.write(chunk);
        });
        if (opts.startup) forwardRewritingFirst(client, upstream, opts.startup, forward);
        else client.on("data", forward);
        client.on("close", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
      server = s;
    });
  const stop = async () => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return {
    port,
    cut: stop,
    restore: () => (server ? Promise.resolve() : listen()),
    loseAnswerTo: (marker, dropAfterMs = 200) => new Promise<void>((passed) => (armed = { marker: Buffer.from(marker), dropAfterMs, passed })),
    close: stop,
  };
}

/** Hands what `client` sends to `forward`, its first length-prefixed message (an Int32 length, itself included) rewritten by `rewrite`. */
function forwardRewritingFirst(client: Socket, upstream: Socket, rewrite: (message: Buffer) => Buffer, forward: (chunk: Buffer) => void): void {
  let head = Buffer.alloc(0);
  const collect = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    if (head.length < 4 || head.length < head.readInt32BE(0)) return;
    client.off("data", collect);
    const length = head.readInt32BE(0);
    upstream.write(rewrite(head.subarray(0, length)));
    if (head.length > length) forward(head.subarray(length));
    client.on("data", forward);
  };
  client.on("data", collect);
}
