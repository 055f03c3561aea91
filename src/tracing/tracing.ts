/**
 * Tracing with the OpenTelemetry SDK, exported over OTLP/HTTP. It runs only while an endpoint is
 * configured; otherwise {@link activeTracer} is undefined and every span site skips its span work
 * entirely (no span, no context, no allocation), so tracing off costs a branch.
 *
 * Spans are parented explicitly, from trace headers, never from an ambient context: a command's
 * parts run in actor mailboxes and group commits, where an async-local context would be wrong.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span, type TextMapGetter, type TextMapSetter, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator, setGlobalErrorHandler } from "@opentelemetry/core";
import type { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { Headers, NerveError } from "../../contracts/index.js";
import type { TraceHeaders } from "./trace-headers.js";

/** Whatever carries a trace context: a request's headers, a write, an outbox row. */
export interface TraceSource {
  traceparent?: string | null | undefined;
  tracestate?: string | null | undefined;
}

export { SpanKind };
export type { Span };

let tracer: Tracer | undefined;
let running: { provider: NodeTracerProvider; users: number } | undefined;

/** The tracer while tracing runs, else undefined: the one check every span site makes first. */
export function activeTracer(): Tracer | undefined {
  return tracer;
}

/** Where and as whom to export spans. */
export interface TracingOptions {
  /** `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL (`/v1/traces` is appended). */
  endpoint?: string | undefined;
  /** `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full traces URL; wins over `endpoint`. */
  tracesEndpoint?: string | undefined;
  /** The instance's name, the resource's `service.instance.id`. */
  instanceId: string;
  version: string;
  /** Told about failed exports (the collector away, say); spans are dropped then, never retried forever. */
  onError?: (err: unknown) => void;
}

/** Running tracing: `flush` exports what is buffered, `shutdown` too and stops. */
export interface Tracing {
  readonly url: string;
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

/** The OTLP/HTTP traces URL the options name, as the OpenTelemetry environment variables define it. */
export function otlpTracesUrl(o: Pick<TracingOptions, "endpoint" | "tracesEndpoint">): string | undefined {
  if (o.tracesEndpoint) return o.tracesEndpoint;
  if (o.endpoint) return `${o.endpoint.replace(/\/+$/, "")}/v1/traces`;
  return undefined;
}

/**
 * Starts tracing when an endpoint is configured (undefined otherwise): a tracer provider with a
 * batch span processor and the OTLP/HTTP (JSON) exporter, `service.name` = nerve. The SDK is loaded
 * only then. The provider is the process's: a second Nerve in the same process shares the first
 * one's; the last shutdown stops it.
 */
export async function startTracing(o: TracingOptions): Promise<Tracing | undefined> {
  const url = otlpTracesUrl(o);
  if (!url) return undefined;
  if (o.onError) setGlobalErrorHandler(o.onError);
  const [{ BatchSpanProcessor, NodeTracerProvider }, { OTLPTraceExporter }, { resourceFromAttributes }, { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION }] = await Promise.all([
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/semantic-conventions"),
  ]);
  if (!running) {
    const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: "nerve", [ATTR_SERVICE_VERSION]: o.version, "service.instance.id": o.instanceId });
    // The batch processor's delay and sizes follow OTEL_BSP_* when set; the exporter's headers OTEL_EXPORTER_OTLP_HEADERS.
    const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url }))] });
    running = { provider, users: 0 };
    tracer = provider.getTracer("nerve", o.version);
  }
  const r = running;
  r.users++;
  let stopped = false;
  return {
    url,
    flush: () => r.provider.forceFlush(),
    async shutdown() {
      if (stopped) return;
      stopped = true;
      if (--r.users > 0) return r.provider.forceFlush();
      if (running === r) {
        running = undefined;
        tracer = undefined;
      }
      await r.provider.shutdown();
    },
  };
}

const propagator = new W3CTraceContextPropagator();
const getter: TextMapGetter<TraceSource> = {
  get: (c, key) => (key === Headers.TraceParent ? c.traceparent : key === Headers.TraceState ? c.tracestate : undefined) ?? undefined,
  keys: () => [Headers.TraceParent, Headers.TraceState],
};
const setter: TextMapSetter<TraceHeaders> = {
  set: (c, key, value) => {
    if (key === Headers.TraceParent) c.traceparent = value;
    else if (key === Headers.TraceState) c.tracestate = value;
  },
};

/** The context a trace source names; the root (a new trace) without one. */
export function contextOf(h: TraceSource | undefined): Context {
  return h?.traceparent ? propagator.extract(ROOT_CONTEXT, h, getter) : ROOT_CONTEXT;
}

/** The headers that make a span the parent of whatever receives them. */
export function headersOf(span: Span): TraceHeaders {
  const h: TraceHeaders = { traceparent: "" };
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), h, setter);
  return h;
}

/** Starts a span whose parent the trace source names (a new trace without one). */
export function startSpan(t: Tracer, name: string, kind: SpanKind, parent: TraceSource | undefined, attributes?: Attributes, startTime?: number): Span {
  return t.startSpan(name, { kind, attributes, startTime }, contextOf(parent));
}

/** A child of `span`. */
export function childSpan(t: Tracer, parent: Span, name: string, attributes?: Attributes, startTime?: number): Span {
  return t.startSpan(name, { kind: SpanKind.INTERNAL, attributes, startTime }, trace.setSpan(ROOT_CONTEXT, parent));
}

/** Links to the spans the headers name (a group commit's to its writes' commands). */
export function linksTo(headers: readonly (TraceSource | undefined)[]): Link[] {
  const links: Link[] = [];
  for (const h of headers) {
    const sc = h && trace.getSpanContext(contextOf(h));
    if (sc) links.push({ context: sc });
  }
  return links;
}

/** Ends a span; a failure marks it as an error with the contract's code when it has one. */
export function endSpan(span: Span | undefined, err?: unknown): void {
  if (!span) return;
  if (err !== undefined) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof NerveError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err) });
    if (err instanceof NerveError) span.setAttribute("nerve.error.code", err.code);
  }
  span.end();
}
