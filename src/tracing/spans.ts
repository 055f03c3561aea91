/** Spans of Nerve's own making that are more than a start and an end. */
import { SpanKind, type Span } from "@opentelemetry/api";
import { activeTracer, contextOf, linksTo, type TraceSource } from "./tracing.js";

/**
 * The span of one group-commit transaction (undefined when tracing is off). One transaction serves
 * many commands of many traces: its parent is the first traced write's command, and it links to
 * every other write's command, so each trace reaches it either way (each command also has a `commit`
 * child span of its own, from submit to commit).
 */
export function groupCommitSpan(writes: readonly TraceSource[]): Span | undefined {
  const t = activeTracer();
  if (!t) return undefined;
  let parent: TraceSource | undefined;
  const others: TraceSource[] = [];
  for (const w of writes) {
    if (!w.traceparent) continue;
    if (parent) others.push(w);
    else parent = w;
  }
  return t.startSpan("group commit", { kind: SpanKind.INTERNAL, attributes: { "nerve.batch_size": writes.length }, links: linksTo(others) }, contextOf(parent));
}
