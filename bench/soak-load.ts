/**
 * The soak's load: the mix sent closed-loop (to find saturation) or open-loop at a fixed rate. In the
 * open loop each request has an intended send time on a fixed schedule and its latency is counted
 * from then, so a stall of the service (or of this process) shows in the figures instead of quietly
 * delaying the next sends (coordinated omission).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { EventIdTally } from "./event-id-tally.js";
import { call, type SoakWorkload } from "./soak-workload.js";
import { runWindowed } from "./window.js";

/** What the load did since the last {@link SoakLoad.takeMinute}. */
export interface LoadMinute {
  sent: number;
  ok: number;
  failed: number;
  failedByCode: Record<string, number>;
  /** Latency of every answer (success or failure), ms. */
  samples: Float64Array;
}

/** A running open loop. */
export interface OpenLoop {
  /** Stops sending and waits for the answers still outstanding. */
  stop(): Promise<void>;
  /** Requests due on the schedule but not yet sent (the in-flight bound holds them back). */
  readonly behind: number;
}

/** Sends the mix and keeps per-minute figures; every acknowledged event id goes into the tally. */
export class SoakLoad {
  #inflight = 0;
  #next = 0;
  #minute = emptyMinute(1024);
  #samples = 0;
  readonly totals = { sent: 0, ok: 0, failed: 0, events: 0 };
  /** The first fault of the load generator itself (not of the service), if any. */
  error: Error | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly workload: SoakWorkload,
    private readonly tally: EventIdTally,
    private readonly timeoutMs = 30_000,
  ) {}

  /** Requests sent and not yet answered. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Keeps `inflight` requests outstanding for `ms`; resolves with the answered rate. */
  async closedLoop(inflight: number, ms: number): Promise<{ seconds: number; ok: number; failed: number; okPerSecond: number }> {
    const before = { ...this.totals };
    const run = await runWindowed(Number.MAX_SAFE_INTEGER, inflight, () => this.#one(performance.now()), Date.now() + ms);
    const seconds = run.ms / 1000;
    const ok = this.totals.ok - before.ok;
    return { seconds, ok, failed: this.totals.failed - before.failed, okPerSecond: ok / seconds };
  }

  /** Sends `rate` requests per second on a fixed schedule until stopped, at most `maxInflight` outstanding. */
  openLoop(rate: number, maxInflight: number): OpenLoop {
    const t0 = performance.now();
    let k = 0;
    let due = 0;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const tick = () => {
      due = Math.floor(((performance.now() - t0) * rate) / 1000);
      while (k < due && this.#inflight < maxInflight) void this.#one(t0 + (k++ * 1000) / rate);
      if (!stopped) timer = setTimeout(tick, 1);
    };
    tick();
    return {
      stop: async () => {
        stopped = true;
        clearTimeout(timer);
        while (this.#inflight > 0) await new Promise((r) => setTimeout(r, 10));
      },
      get behind() {
        return due - k;
      },
    };
  }

  /** The figures since the last call; starts a new minute. */
  takeMinute(): LoadMinute {
    const m = { ...this.#minute, samples: this.#minute.samples.slice(0, this.#samples) };
    this.#minute = emptyMinute(Math.max(1024, this.#samples * 1.2));
    this.#samples = 0;
    return m;
  }

  // Sends the next request of the mix; never rejects: a fault of the bench itself is kept in `error`.
  async #one(intendedAt: number): Promise<void> {
    this.#inflight++;
    try {
      await this.#send(intendedAt);
    } catch (err) {
      this.error ??= err instanceof Error ? err : new Error(String(err));
    } finally {
      this.#inflight--;
    }
  }

  async #send(intendedAt: number): Promise<void> {
    const req = this.workload.next(this.#next++);
    this.#minute.sent++;
    this.totals.sent++;
    const reply = await call(this.nc, req.subject, req.body, this.timeoutMs);
    this.#record(performance.now() - intendedAt);
    if (reply.ok) {
      this.#minute.ok++;
      this.totals.ok++;
      for (const e of reply.events ?? []) this.tally.ack(e.event_id);
      this.totals.events += reply.events?.length ?? 0;
    } else {
      this.#minute.failed++;
      this.totals.failed++;
      const code = reply.code ?? "unknown";
      this.#minute.failedByCode[code] = (this.#minute.failedByCode[code] ?? 0) + 1;
    }
    this.workload.replied(req, reply);
  }

  #record(ms: number): void {
    if (this.#samples === this.#minute.samples.length) {
      const grown = new Float64Array(this.#samples * 2);
      grown.set(this.#minute.samples);
      this.#minute.samples = grown;
    }
    this.#minute.samples[this.#samples++] = ms;
  }
}

function emptyMinute(capacity: number): LoadMinute {
  return { sent: 0, ok: 0, failed: 0, failedByCode: {}, samples: new Float64Array(Math.ceil(capacity)) };
}
