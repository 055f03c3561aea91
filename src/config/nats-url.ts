/**
 * NATS_URL as nats.js takes it: a comma-separated list of servers, each `[nats|tls://][user[:pass]@]host[:port]`
 * (port 4222 when none is given). Checked at start-up: "not-a-url" or a port past 65535 stopped the service
 * with nats.js's bare "Invalid URL", naming no variable.
 */

/** One server of NATS_URL. */
export interface NatsServer {
  host: string;
  port: number;
}

const SERVER = /^(?:(?<scheme>[A-Za-z][A-Za-z0-9+.-]*):\/\/)?(?:[^@/\s]*@)?(?<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?<port>\d{1,5}))?\/?$/;

/** The servers of a NATS_URL; throws a message naming the first bad one. */
export function natsServers(url: string): NatsServer[] {
  const items = url.split(",").map((s) => s.trim());
  if (items.every((s) => s === "")) throw new Error("must name at least one NATS server, like nats://127.0.0.1:4222");
  return items.map((item) => {
    const m = SERVER.exec(item);
    const scheme = m?.groups?.scheme?.toLowerCase();
    const port = m?.groups?.port === undefined ? 4222 : Number(m.groups.port);
    if (!m || (scheme !== undefined && scheme !== "nats" && scheme !== "tls") || port < 1 || port > 65535) {
      throw new Error(`must be a comma-separated list of NATS servers like nats://host:4222 (nats:// or tls://, a port 1 to 65535), not ${JSON.stringify(item)}`);
    }
    return { host: m.groups!.host!.replace(/^\[|\]$/g, ""), port };
  });
}
