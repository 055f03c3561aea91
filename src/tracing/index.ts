/** OpenTelemetry tracing (off unless an OTLP endpoint is configured) and W3C trace context headers. */
export * from "./tracing.js";
export * from "./trace-headers.js";
export * from "./cause.js";
export * from "./spans.js";
export * from "./root-traceparent.js";
