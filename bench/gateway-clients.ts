/**
 * The bench's learners: one `ws` client per learner, all in this process. In `latency` mode each
 * ProgressUpdated frame is reported (to be matched with the command reply and the JetStream store
 * time of the event behind it); in `count` mode frames are
 * only counted (saturation), so the clients' own parsing is not what limits the figure.
 */
import WebSocket from "ws";

/** How frames are handled. */
export type FleetMode = "latency" | "count";

/** Latencies from command reply to frame received, per (learner, progress). */
export class LatencyBook {
  readonly #replyAt = new Map<string, number>();
  readonly #frameAt = new Map<string, number>();
  samples: number[] = [];

  /** The command's reply arrived at `at`. */
  reply(key: string, at: number): void {
    const frame = this.#frameAt.get(key);
    if (frame !== undefined) {
      this.#frameAt.delete(key);
      this.samples.push(Math.max(0, frame - at)); // the frame won the race: latency 0
    } else this.#replyAt.set(key, at);
  }

  /** The frame arrived at `at`. */
  frame(key: string, at: number): void {
    const reply = this.#replyAt.get(key);
    if (reply !== undefined) {
      this.#replyAt.delete(key);
      this.samples.push(at - reply);
    } else this.#frameAt.set(key, at);
  }

  /** Replies still waiting for their frame. */
  get waiting(): number {
    return this.#replyAt.size;
  }

  /** Starts a new measurement. */
  reset(): void {
    this.#replyAt.clear();
    this.#frameAt.clear();
    this.samples = [];
  }
}

/** Many learners' sockets. */
export class ClientFleet {
  readonly sockets: WebSocket[] = [];
  mode: FleetMode = "latency";
  frames = 0;
  welcomes = 0;
  closedEarly = 0;
  /** Early closes by close code. */
  readonly closeCodes = new Map<number, number>();
  /** Errors of open sockets (a frame the client refused, a reset), the first few. */
  readonly errors: string[] = [];
  /** Which sockets got their welcome. */
  readonly #welcomed = new Set<number>();
  #closing = false;

  constructor(
    private readonly port: number,
    private readonly tokens: string[],
    /** Called with `<learner index>:<progress>` for every ProgressUpdated frame (latency mode). */
    private readonly onProgress: (key: string) => void,
  ) {}

  /** Connects learners up to `upTo` (all by default), `concurrency` handshakes at a time; resolves once they are welcomed. */
  async connectAll(concurrency = 256, upTo = this.tokens.length): Promise<number> {
    const started = performance.now();
    let next = this.sockets.length;
    const worker = async () => {
      while (next < upTo) {
        const i = next++;
        this.sockets[i] = await this.#connect(i);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const deadline = Date.now() + 60_000;
    while (this.welcomes < upTo && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (this.welcomes < upTo) {
      // What became of the others: still open and silent, or closed (and how).
      const missing = [];
      for (let i = 0; i < upTo && missing.length < 5; i++) if (!this.#welcomed.has(i)) missing.push(`#${i} readyState ${this.sockets[i]?.readyState}`);
      const codes = [...this.closeCodes].map(([c, n]) => `${c}×${n}`).join(", ") || "none";
      throw new Error(`only ${this.welcomes} of ${upTo} learners were welcomed; closed early: ${this.closedEarly} (codes ${codes}); first without a welcome: ${missing.join("; ")}; socket errors: ${this.errors.join("; ") || "none"}`);
    }
    return (performance.now() - started) / 1000;
  }

  #connect(i: number): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${this.port}/v1/ws?token=${this.tokens[i]}`, { perMessageDeflate: false });
      ws.once("open", () => {
        resolve(ws);
        // After the open, an error (the client refusing a frame, a reset) comes before the close: kept for the report.
        ws.on("error", (err: Error) => {
          if (this.errors.length < 5) this.errors.push(`#${i}: ${err.message}`);
        });
      });
      ws.once("error", reject);
      ws.on("close", (code: number) => {
        if (this.#closing) return;
        this.closedEarly++;
        this.closeCodes.set(code, (this.closeCodes.get(code) ?? 0) + 1);
      });
      ws.on("message", (data: Buffer) => {
        this.frames++;
        if (this.mode === "count") return;
        const f = JSON.parse(data.toString()) as { type: string; event?: { event_type: string; payload: { progress?: number } } };
        if (f.type === "welcome") {
          this.welcomes++;
          this.#welcomed.add(i);
        }
        else if (f.type === "event" && f.event!.event_type === "ProgressUpdated") this.onProgress(`${i}:${f.event!.payload.progress}`);
      });
    });
  }

  /** Closes every socket and waits until they are gone. */
  async closeAll(): Promise<void> {
    this.#closing = true;
    await Promise.all(
      this.sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === WebSocket.CLOSED) return resolve();
            ws.once("close", () => resolve());
            ws.terminate();
          }),
      ),
    );
  }
}
