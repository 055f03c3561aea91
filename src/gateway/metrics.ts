/** The gateway's Prometheus metrics, on a registry of its own (several gateways may share a process). */
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { LeanHistogram } from "../app/lean-histogram.js";

/** How long (ms) after a render of `/metrics` began its text is served again. */
export const METRICS_REUSE_MS = 1000;

/** A render of the registry: when it was asked for, its text, and whether it has ended. */
interface Render {
  at: number;
  text: Promise<string>;
  done: boolean;
}

/** Metrics of one gateway. */
export class GatewayMetrics {
  readonly registry = new Registry();
  #render: Render | undefined;
  /** Open WebSockets. */
  readonly connections = new Gauge({ name: "nerve_gateway_connections", help: "Open WebSocket connections", registers: [this.registry] });
  readonly full = new Gauge({ name: "nerve_gateway_full_sockets", help: "Sockets behind: they went over their byte budget and have not caught up since (closed with 4408 if that lasts 10 s)", registers: [this.registry] });
  /** Frames written to sockets, by frame type. */
  readonly framesSent = new Counter({ name: "nerve_gateway_frames_sent_total", help: "Frames written to WebSockets", labelNames: ["type"] as const, registers: [this.registry] });
  /** Of those, event frames of a resume's missed events (counted also as `type="event"`). */
  readonly framesReplayed = new Counter({ name: "nerve_gateway_frames_replayed_total", help: "Event frames of a resume's missed events written to WebSockets (also in nerve_gateway_frames_sent_total{type=\"event\"}; not in the push latency)", registers: [this.registry] });
  /**
   * From JetStream storing an event to its frame being written to a learner's socket, for events pushed
   * live (observed per frame: a {@link LeanHistogram}). Not a resume's missed events: their store time is
   * when the client was away.
   */
  readonly pushLatency = new LeanHistogram({
    name: "nerve_gateway_push_latency_seconds",
    help: "Time from an event being stored in JetStream to its frame being written to a socket, for events pushed live (not those a resume replays)",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  }).register(this.registry);
  /** Client commands, by result (`ok` or the contract's error code). */
  readonly commands = new Counter({ name: "nerve_gateway_commands_total", help: "Client commands by result", labelNames: ["result"] as const, registers: [this.registry] });
  /** Connections refused or closed, by reason. */
  readonly closes = new Counter({ name: "nerve_gateway_closes_total", help: "Connections refused or closed by the gateway, by reason", labelNames: ["reason"] as const, registers: [this.registry] });
  /**
   * Figures of the hot path, counted in plain fields and read at scrape time: labelled counter and
   * gauge updates per access event cost more than the rest of its bookkeeping.
   */
  readonly feed = { events: new Map<string, number>(), head: 0, buffered: 0 };
  /** Access events read from JetStream, by outcome. */
  readonly events: Counter<"outcome"> = new Counter({
    name: "nerve_gateway_events_total",
    help: "EVENTS_ACCESS messages read, by outcome",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
    collect: (): void => {
      for (const [outcome, n] of this.feed.events) this.events.inc({ outcome }, n);
      this.feed.events.clear();
    },
  });
  /** Events held for resumes. */
  readonly buffered: Gauge = new Gauge({ name: "nerve_gateway_buffered_events", help: "Events buffered for resumes", registers: [this.registry], collect: (): void => this.buffered.set(this.feed.buffered) });
  /** The stream sequence read up to. */
  readonly head: Gauge = new Gauge({ name: "nerve_gateway_stream_head", help: "EVENTS_ACCESS sequence read up to", registers: [this.registry], collect: (): void => this.head.set(this.feed.head) });

  /**
   * The registry as Prometheus text, for `/metrics`. A render reads every figure on the main thread
   * (and counts rows in the database, asks worker threads for their heaps): one at a time, its text
   * served to every request within {@link METRICS_REUSE_MS} of it, so that a client asking in a loop
   * costs about one render a second, not one per request. A request that comes while a render too old
   * to serve is still running waits for it to end, then for a render of its own.
   */
  render(): Promise<string> {
    const now = this.now();
    const last = this.#render;
    if (last && now - last.at <= METRICS_REUSE_MS) return last.text;
    const after = last && !last.done ? last.text.then(noop, noop) : undefined;
    const r: Render = { at: now, text: after ? after.then(() => this.registry.metrics()) : this.registry.metrics(), done: false };
    this.#render = r;
    r.text.then(
      () => (r.done = true),
      () => {
        r.done = true;
        // A failed render is not served again: the next request tries afresh.
        if (this.#render === r) this.#render = undefined;
      },
    );
    return r.text;
  }

  /** Counts one access event read, by outcome. */
  countEvent(outcome: string): void {
    this.feed.events.set(outcome, (this.feed.events.get(outcome) ?? 0) + 1);
  }

  /** `now`: the clock renders are timed by (a test's own, to step past {@link METRICS_REUSE_MS}). */
  constructor(private readonly now: () => number = Date.now) {
    collectDefaultMetrics({ register: this.registry, prefix: "nerve_gateway_" });
  }
}

function noop(): void {}
