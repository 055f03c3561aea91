/**
 * NATS_URL as nats.js takes it: a comma-separated list of servers, each `[nats|tls://]host[:port]` (port 4222
 * when none is given; a path is ignored; empty items are skipped, as the connection skips them). Checked at
 * start-up: "not-a-url" or a port past 65535 stopped the service with nats.js's bare "Invalid URL", naming no
 * variable. Credentials in the URL are refused: nats.js does not read them (it connected without them, or,
 * for a host without a dot, threw "Invalid URL"); NATS_USER and NATS_PASSWORD or NATS_CREDS carry them.
 */

/** One server of NATS_URL. */
export interface NatsServer {
  host: string;
  port: number;
}

const SERVER = /^(?:(?<scheme>[A-Za-z][A-Za-z0-9+.-]*):\/\/)?(?<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?<port>\d{1,5}))?(?:\/.*)?$/;
// An IPv6 address without brackets (nats.js brackets it itself): no port can follow it.
const BARE_IPV6 = /^(?:(?<scheme>[A-Za-z][A-Za-z0-9+.-]*):\/\/)?(?<host>[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/;

/** The servers of a NATS_URL; throws a message naming the first bad one. */
export function natsServers(url: string): NatsServer[] {
  const items = url
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new Error("must name at least one NATS server, like nats://127.0.0.1:4222");
  return items.map((item) => {
    if (/^(?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?[^/]*@/.test(item)) {
      throw new Error(`carries credentials, which the NATS client does not read from the URL: set NATS_USER and NATS_PASSWORD (or NATS_CREDS) instead`);
    }
    const m = SERVER.exec(item) ?? BARE_IPV6.exec(item);
    const scheme = m?.groups?.scheme?.toLowerCase();
    const port = m?.groups?.port === undefined ? 4222 : Number(m.groups.port);
    if (!m || (scheme !== undefined && scheme !== "nats" && scheme !== "tls") || port < 1 || port > 65535) {
      throw new Error(`must be a comma-separated list of NATS servers like nats://host:4222 (nats:// or tls://, a port 1 to 65535), not ${JSON.stringify(item)}`);
    }
    return { host: m.groups!.host!.replace(/^\[|\]$/g, ""), port };
  });
}
