/** Helpers of the gateway tests: a gateway on a test Nerve, tokens, a recording WebSocket client, fabricated events. */
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import WebSocket from "ws";
import { deriveAccessId, type EventType } from "../../contracts/index.js";
import { startGateway, signToken, type Gateway, type GatewayDeps } from "../../src/gateway/index.js";
import { createLogger } from "../../src/log/index.js";
import { afterAll, beforeAll } from "vitest";
import { command, startTestNerve, type TestNerve } from "../support/index.js";
import { accessEventMessage } from "../support/access-events.js";

/** The secret every gateway test signs with. */
export const SECRET = "gateway-test-secret-0123456789";

/** A gateway on its own NATS connection (as a separately started gateway would run), warm: its start-up replay done. */
export async function startTestGateway(natsUrl: string, opts: Partial<GatewayDeps> = {}): Promise<Gateway & { nc: NatsConnection; close(): Promise<void> }> {
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
  const gw = await startGateway({ nc, port: 0, host: "127.0.0.1", jwtSecret: SECRET, logger: createLogger(process.env.GATEWAY_TEST_LOG ?? "silent"), ...opts });
  await gw.warmedUp;
  return {
    ...gw,
    nc,
    async close() {
      await gw.stop();
      await nc.close();
    },
  };
}

/** A token for `userId` valid `ttlSeconds` from now (negative: already expired). */
export function token(userId: string, ttlSeconds = 3600, secret = SECRET): Promise<string> {
  return signToken(secret, userId, Math.floor(Date.now() / 1000) + ttlSeconds);
}

/** The HTTP status of an upgrade with this query and headers: 101 when it is accepted (the socket is then dropped). */
export function upgradeStatus(port: number, query: Record<string, string>, headers: Record<string, string> = {}): Promise<number | undefined> {
  return TestClient.connect(port, query, headers).then(
    (c) => {
      c.ws.terminate();
      return 101;
    },
    (err: { status?: number }) => err.status,
  );
}

/** A server frame as the tests see it. */
export type Frame = { type: string; cursor?: string; event?: any; progress?: any[]; user_id?: string; request_id?: string | null; ok?: boolean; error?: any };

/** A WebSocket client that records every frame. */
export class TestClient {
  readonly frames: Frame[] = [];
  closed: { code: number; reason: string; msAfterOpen?: number; error?: string } | undefined;
  readonly ws: WebSocket;
  #openedAt = 0;
  #error: string | undefined;
  readonly #waiters = new Set<() => void>();

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data) => {
      this.frames.push(JSON.parse(String(data)));
      this.#wake();
    });
    ws.on("open", () => (this.#openedAt = Date.now()));
    ws.on("error", (err) => (this.#error = err.message));
    ws.on("close", (code, reason) => {
      // When and why, for the failure message of a wait that never ends.
      this.closed = { code, reason: reason.toString(), ...(this.#openedAt ? { msAfterOpen: Date.now() - this.#openedAt } : {}), ...(this.#error ? { error: this.#error } : {}) };
      this.#wake();
    });
  }

  /** Connects; rejects with the HTTP status when the upgrade is refused. */
  static connect(port: number, query: Record<string, string>, headers: Record<string, string> = {}): Promise<TestClient> {
    const qs = new URLSearchParams(query).toString();
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws${qs ? `?${qs}` : ""}`, { headers });
    const client = new TestClient(ws);
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(client));
      ws.once("unexpected-response", (_req, res) => {
        reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode }));
        ws.terminate();
      });
      ws.once("error", reject);
    });
  }

  /**
   * Connects with a token for `userId` (and a cursor when given). A socket uWS drops with 1006 right after
   * its open, before any frame (a known uWS issue under load: README, "closed with 1006"; it came in a
   * `beforeAll`, where vitest retries nothing), is opened again, three times at most: a close is waited
   * for up to 50 ms (that one comes within a few; the tests of what a socket does before its welcome send
   * their frames after it, well before a welcome held back 300 ms), or until the first frame.
   */
  static async as(port: number, userId: string, cursor?: string): Promise<TestClient> {
    for (let attempt = 1; ; attempt++) {
      const c = await TestClient.connect(port, { token: await token(userId), ...(cursor ? { cursor } : {}) });
      await c.until((c) => c.frames.length > 0 || c.closed !== undefined, 50, "the first frame").catch(() => undefined);
      if (attempt === 3 || !c.droppedAtOpen) return c;
    }
  }

  /** Closed with 1006 before any frame came: uWS's early close, not the gateway's doing. */
  get droppedAtOpen(): boolean {
    return this.closed?.code === 1006 && this.frames.length === 0;
  }

  /**
   * Connects as {@link as} does and waits until `ready` holds (default: the welcome came); connects again
   * when uWS drops the fresh socket with 1006 before any frame (a known uWS issue under load: README,
   * "closed with 1006"), three times at most.
   */
  static async ready(port: number, userId: string, ready: (c: TestClient) => boolean = (c) => c.frames.some((f) => f.type === "welcome"), cursor?: string): Promise<TestClient> {
    for (let attempt = 1; ; attempt++) {
      const c = await TestClient.as(port, userId, cursor);
      await c.until((c) => ready(c) || c.closed !== undefined, 10_000, "the session's first frames");
      if (ready(c)) return c;
      if (attempt === 3 || !c.droppedAtOpen) throw new Error(`socket of ${userId} closed: ${JSON.stringify(c.closed)}`);
    }
  }

  /** Event frames received so far. */
  get events(): Frame[] {
    return this.frames.filter((f) => f.type === "event");
  }

  /** The cursor of the last frame that carried one. */
  get cursor(): string | undefined {
    return this.frames.findLast((f) => f.cursor !== undefined)?.cursor;
  }

  /** Waits until `ok` holds (checked on every frame and close); fails at once when the socket closes without it. */
  async until(ok: (c: TestClient) => boolean, ms = 10_000, what = "condition"): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ok(this)) {
      // A closed socket gets no more frames: waiting out the timeout would only hide why.
      if (this.closed) throw new Error(`socket closed while waiting for ${what}; frames: ${JSON.stringify(this.frames.slice(-5))}; closed: ${JSON.stringify(this.closed)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames.slice(-5))}; closed: ${JSON.stringify(this.closed)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.#waiters.add(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the welcome and returns it. */
  async welcome(): Promise<Frame> {
    await this.until((c) => c.frames.some((f) => f.type === "welcome"), 10_000, "welcome");
    return this.frames.find((f) => f.type === "welcome")!;
  }

  /** Waits for `n` event frames in all. */
  async eventCount(n: number, ms = 10_000): Promise<Frame[]> {
    await this.until((c) => c.events.length >= n, ms, `${n} events`);
    return this.events;
  }

  /** Sends a client frame (an object is JSON-encoded). */
  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  /** Waits for the ack of `requestId`. */
  async ack(requestId: string | null, ms = 10_000): Promise<Frame> {
    await this.until((c) => c.frames.some((f) => f.type === "ack" && f.request_id === requestId), ms, `ack ${requestId}`);
    return this.frames.find((f) => f.type === "ack" && f.request_id === requestId)!;
  }

  /** Waits for the socket to close. */
  async closedWith(ms = 10_000): Promise<{ code: number; reason: string }> {
    await this.until((c) => c.closed !== undefined, ms, "close");
    return this.closed!;
  }

  /** Closes the socket and waits for it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.ws.close();
    await this.closedWith();
  }

  #wake(): void {
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }
}

/** Grants `userId` access to `courseId` through the command path. */
export async function grant(nc: NatsConnection, userId: string, courseId: string, expiresAt: string | null = null): Promise<any> {
  const r = await command(nc, "access", "GrantCourseAccess", deriveAccessId(userId, courseId), { user_id: userId, course_id: courseId, expires_at: expiresAt });
  if (!r.body.ok) throw new Error(`grant failed: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Updates progress through the command path. */
export async function progress(nc: NatsConnection, userId: string, courseId: string, value: number): Promise<any> {
  const r = await command(nc, "access", "UpdateProgress", deriveAccessId(userId, courseId), { progress: value });
  if (!r.body.ok) throw new Error(`progress failed: ${JSON.stringify(r.body)}`);
  return r.body;
}

/**
 * Publishes a contract-valid access event straight to JetStream, as the outbox relay would: for
 * volumes the command path would take too long to produce. Versions are counted per access record.
 */
export class EventForge {
  readonly #versions = new Map<string, number>();
  constructor(private readonly nc: NatsConnection) {}

  /** Builds and publishes one event; resolves with its stream sequence. */
  async publish(type: EventType, userId: string, courseId: string, extra: Record<string, unknown> = {}): Promise<number> {
    const access_id = deriveAccessId(userId, courseId);
    const version = (this.#versions.get(access_id) ?? 0) + 1;
    this.#versions.set(access_id, version);
    const e = accessEventMessage(type, { access_id, user_id: userId, course_id: courseId }, version, extra);
    const ack = await jetstream(this.nc).publish(e.subject, e.data, { headers: e.headers });
    return ack.seq;
  }

  /** Publishes `count` ProgressUpdated events for one record, up to `window` at a time, in order. */
  async progressBurst(userId: string, courseId: string, count: number, window = 256): Promise<number[]> {
    const seqs: number[] = [];
    for (let i = 0; i < count; i += window) {
      const n = Math.min(window, count - i);
      seqs.push(...(await Promise.all(Array.from({ length: n }, (_, k) => this.publish("ProgressUpdated", userId, courseId, { progress: (i + k) % 101 })))));
    }
    return seqs;
  }
}

/** A gateway started by {@link startTestGateway}. */
export type TestGateway = Awaited<ReturnType<typeof startTestGateway>>;

/**
 * A test Nerve and a gateway on its NATS for one test file: started before its tests (handed to
 * `set`), closed after them, the gateway first.
 */
export function useNerveAndGateway(set: (started: { t: TestNerve; gw: TestGateway }) => void, opts: Partial<GatewayDeps> = {}): void {
  let t: TestNerve | undefined;
  let gw: TestGateway | undefined;
  beforeAll(async () => {
    t = await startTestNerve();
    gw = await startTestGateway(t.nats.url, opts);
    set({ t, gw });
  });
  afterAll(async () => {
    await gw?.close();
    await t?.close();
  });
}

/** Waits for `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
