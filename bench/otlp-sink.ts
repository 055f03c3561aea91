/**
 * An OTLP/HTTP endpoint that takes spans and throws them away, in a child process of its own so its
 * work is not counted as the service's CPU. It counts what it received (GET /count).
 */
import { spawn } from "node:child_process";
import { killOnExit, terminate } from "../test/support/children.js";

const SINK = `
const http = require("node:http");
let requests = 0, spans = 0;
http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.method === "GET") return res.end(JSON.stringify({ requests, spans }));
    requests++;
    try {
      for (const rs of JSON.parse(Buffer.concat(chunks).toString()).resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans += (ss.spans ?? []).length;
    } catch {}
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
}).listen(0, "127.0.0.1", function () { console.log(this.address().port); });
`;

/** A running sink. */
export interface OtlpSink {
  /** The base URL (OTEL_EXPORTER_OTLP_ENDPOINT). */
  url: string;
  /** Export requests and spans received so far. */
  count(): Promise<{ requests: number; spans: number }>;
  close(): Promise<void>;
}

/** Starts the sink; resolves once it listens. */
export async function startOtlpSink(): Promise<OtlpSink> {
  const child = spawn(process.execPath, ["-e", SINK], { stdio: ["ignore", "pipe", "inherit"] });
  killOnExit(child);
  const port = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`the OTLP sink exited with ${code}`)));
    child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    count: async () => (await (await fetch(`${url}/count`)).json()) as { requests: number; spans: number },
    close: async () => void (await terminate(child, 5_000)),
  };
}
