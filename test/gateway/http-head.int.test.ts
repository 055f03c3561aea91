/**
 * HEAD requests (issue #10; found by ws.props.int.test.ts): uWS routes HEAD apart from GET, so every
 * HEAD used to fall through to the catch-all 404 — with its body, which a client reads as the start
 * of the next response on a kept-alive connection. Each route now answers HEAD as GET, headers only.
 */
import { createConnection } from "node:net";
import { describe, expect, it } from "vitest";
import type { TestNerve } from "../support/index.js";
import { useNerveAndGateway, type TestGateway } from "./support.js";

let gw: TestGateway;
useNerveAndGateway((started: { t: TestNerve; gw: TestGateway }) => ({ gw } = started), { devTokens: true });

/**
 * Writes raw requests on one kept-alive connection, each once the server has gone quiet after the
 * one before (not pipelined: uWS answers nothing to requests pipelined behind one it answers later),
 * and returns everything read.
 */
async function exchange(port: number, ...requests: string[]): Promise<string> {
  const sock = createConnection({ host: "127.0.0.1", port });
  let out = "";
  let wake: (() => void) | undefined;
  sock.on("data", (d) => {
    out += d.toString("latin1");
    wake?.();
  });
  await new Promise<void>((resolve, reject) => sock.once("connect", resolve).once("error", reject));
  for (const r of requests) {
    sock.write(r);
    // Until nothing more arrives for 100 ms (at most 3 s).
    const until = Date.now() + 3000;
    for (let before = -1; before !== out.length && Date.now() < until; ) {
      before = out.length;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, before === 0 ? 3000 : 100);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      if (out.length === before) break;
    }
  }
  sock.destroy();
  return out;
}

const request = (method: string, path: string) => `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;

/** Splits a raw response stream into responses by Content-Length; HEAD ones carry none. */
function responses(raw: string, methods: string[]): { status: number; headers: Record<string, string>; body: string }[] {
  const out = [];
  let rest = raw;
  for (const method of methods) {
    const end = rest.indexOf("\r\n\r\n");
    expect(end, `no further response in ${JSON.stringify(rest)}`).toBeGreaterThan(0);
    const [statusLine, ...lines] = rest.slice(0, end).split("\r\n");
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
    const length = method === "HEAD" ? 0 : Number(headers["content-length"] ?? 0);
    out.push({ status: Number(statusLine!.split(" ")[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  expect(rest, "bytes after the last response").toBe("");
  return out;
}

describe("HEAD", () => {
  it.each(["/healthz", "/readyz", "/metrics", "/", "/dev/token?user_id=ada", "/dev/token?user_id=a.b", "/nope"])(
    "answers HEAD %s with GET's status, type and length, and no body",
    async (path) => {
      const [get] = responses(await exchange(gw.port, request("GET", path)), ["GET"]);
      // HEAD then GET on one connection: the GET's answer must come out whole, right after the HEAD's headers.
      const [head, after] = responses(await exchange(gw.port, request("HEAD", path), request("GET", "/healthz")), ["HEAD", "GET"]);
      expect(head!.status).toBe(get!.status);
      expect(head!.headers["content-type"]).toBe(get!.headers["content-type"]);
      if (!path.startsWith("/metrics") && !path.startsWith("/dev/token?user_id=ada")) {
        // (metrics and tokens differ from one request to the next in their length)
        expect(head!.headers["content-length"]).toBe(get!.headers["content-length"]);
      }
      expect(head!.body).toBe("");
      expect([after!.status, after!.body]).toEqual([200, "ok"]);
    },
  );

  it("still serves after many HEAD requests (a HEAD answer left unended makes uWS end the process)", async () => {
    // Pipelined: every answer here is immediate.
    const raw = await exchange(gw.port, Array.from({ length: 20 }, () => request("HEAD", "/healthz")).join("") + request("GET", "/healthz"));
    const all = responses(raw, [...Array.from({ length: 20 }, () => "HEAD"), "GET"]);
    expect(all.map((r) => r.status)).toEqual(Array.from({ length: 21 }, () => 200));
    expect(all.at(-1)!.body).toBe("ok");
  });
});
