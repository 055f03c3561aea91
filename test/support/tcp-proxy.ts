/**
 * A TCP proxy in front of a real server (PostgreSQL, say), for outages a test can switch on and off:
 * `cut()` drops every connection through it and refuses new ones, as a server that went away; `restore()`
 * accepts again on the same port.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { freePort } from "./nats-server.js";

export interface TcpProxy {
  /** The port clients connect to (127.0.0.1). */
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function tcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = createConnection(target);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on("close", () => sockets.delete(sock));
          sock.on("error", () => undefined);
        }
        client.pipe(upstream).pipe(client);
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
  return { port, cut: stop, restore: () => (server ? Promise.resolve() : listen()), close: stop };
}
