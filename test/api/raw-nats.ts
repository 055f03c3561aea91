/**
 * A NATS client that speaks the wire protocol itself, for the API's property tests: unlike nats.js it
 * sends whatever header block it is given — keys with spaces, non-ASCII, no `NATS/1.0` line, random
 * bytes — exactly as a hostile or broken client in another language could.
 */
import { createConnection, type Socket } from "node:net";
import { randomBytes } from "node:crypto";

/** A reply as it arrived: its header block parsed, its body untouched. */
export interface RawReply {
  /** The status of the header line (`NATS/1.0 503` → 503), 0 when none. */
  status: number;
  /** The first value of each header. */
  headers: Record<string, string>;
  data: Uint8Array;
}

const CRLF = Buffer.from("\r\n");

/** One connection; requests get replies on a private inbox. */
export class RawNats {
  readonly #sock: Socket;
  readonly #inbox = `_RAW.${randomBytes(8).toString("hex")}`;
  readonly #waiting = new Map<string, (r: RawReply) => void>();
  /** `-ERR` lines the server sent. */
  readonly errors: string[] = [];
  #buf = Buffer.alloc(0);
  #next = 0;
  #closed = false;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.on("data", (d) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#parse();
    });
    sock.on("close", () => (this.#closed = true));
    sock.on("error", () => (this.#closed = true));
  }

  /** Connects to the server at 127.0.0.1:`port` and subscribes to its inbox. */
  static async connect(port: number): Promise<RawNats> {
    const sock = createConnection({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    const nc = new RawNats(sock);
    const connectOpts = { verbose: false, pedantic: false, headers: true, no_responders: true, protocol: 1, lang: "raw", version: "0" };
    sock.write(`CONNECT ${JSON.stringify(connectOpts)}\r\nSUB ${nc.#inbox}.> 1\r\n`);
    await nc.ping();
    return nc;
  }

  /** Whether the server closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Round trip to the server (everything sent before is processed). */
  ping(timeoutMs = 5000): Promise<void> {
    const key = "\u0000pong";
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no PONG")), timeoutMs);
      this.#waiting.set(key, () => {
        clearTimeout(timer);
        resolve();
      });
      this.#sock.write("PING\r\n");
    });
  }

  /**
   * Sends `body` to `subject` with the header block `header` (bytes as given; undefined: a plain PUB)
   * and resolves with the reply, or "timeout".
   */
  request(subject: string, header: Uint8Array | undefined, body: Uint8Array, timeoutMs = 5000): Promise<RawReply | "timeout"> {
    const reply = `${this.#inbox}.${++this.#next}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(reply);
        resolve("timeout");
      }, timeoutMs);
      this.#waiting.set(reply, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.publish(subject, reply, header, body);
    });
  }

  /** Publishes without waiting for anything. */
  publish(subject: string, reply: string | undefined, header: Uint8Array | undefined, body: Uint8Array): void {
    const r = reply ? ` ${reply}` : "";
    const line =
      header === undefined ? `PUB ${subject}${r} ${body.length}\r\n` : `HPUB ${subject}${r} ${header.length} ${header.length + body.length}\r\n`;
    this.#sock.write(Buffer.concat([Buffer.from(line, "utf8"), ...(header ? [header] : []), body, CRLF]));
  }

  /** Closes the connection. */
  close(): void {
    this.#sock.destroy();
  }

  #parse(): void {
    for (;;) {
      const eol = this.#buf.indexOf(CRLF);
      if (eol < 0) return;
      const line = this.#buf.subarray(0, eol).toString("utf8");
      const [op, ...args] = line.split(" ");
      if (op === "MSG" || op === "HMSG") {
        const total = Number(args[args.length - 1]);
        const hdrLen = op === "HMSG" ? Number(args[args.length - 2]) : 0;
        const start = eol + 2;
        if (this.#buf.length < start + total + 2) return;
        const block = this.#buf.subarray(start, start + total);
        this.#buf = this.#buf.subarray(start + total + 2);
        this.#deliver(args[0]!, block.subarray(0, hdrLen), block.subarray(hdrLen));
        continue;
      }
      this.#buf = this.#buf.subarray(eol + 2);
      if (op === "PING") this.#sock.write("PONG\r\n");
      else if (op === "PONG") this.#take("\u0000pong")?.({ status: 0, headers: {}, data: new Uint8Array() });
      else if (op === "-ERR") this.errors.push(line);
    }
  }

  #take(key: string): ((r: RawReply) => void) | undefined {
    const fn = this.#waiting.get(key);
    this.#waiting.delete(key);
    return fn;
  }

  #deliver(subject: string, header: Buffer, data: Buffer): void {
    const { status, headers } = parseHeaderBlock(header);
    this.#take(subject)?.({ status, headers, data: new Uint8Array(data) });
  }
}

/** Parses a well-formed header block (`NATS/1.0[ code[ description]]` and `Key: value` lines). */
export function parseHeaderBlock(block: Uint8Array): { status: number; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  if (block.length === 0) return { status: 0, headers };
  const [first = "", ...lines] = Buffer.from(block).toString("utf8").split("\r\n");
  const status = Number(/^NATS\/1\.0 (\d{3})/.exec(first)?.[1] ?? 0);
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0 && !(l.slice(0, i) in headers)) headers[l.slice(0, i)] = l.slice(i + 1).trim();
  }
  return { status, headers };
}

/** Builds a header block from lines exactly as given (`NATS/1.0` first unless `statusLine` says otherwise). */
export function headerBlock(lines: readonly string[], statusLine = "NATS/1.0"): Uint8Array {
  return Buffer.from(`${statusLine}\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`, "utf8");
}
