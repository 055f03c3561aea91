/**
 * The trace of the event a process manager is reacting to, for the commands it issues: they join
 * that trace whether or not tracing runs here (the contract carries `traceparent` either way).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { TraceHeaders } from "./trace-headers.js";

const cause = new AsyncLocalStorage<TraceHeaders>();

/** Runs `fn` with `trace` as the cause of the commands it issues (directly when there is none). */
export function withCause<T>(trace: TraceHeaders | undefined, fn: () => T): T {
  return trace ? cause.run(trace, fn) : fn();
}

/** The trace of the event being reacted to, if any. */
export function causeTrace(): TraceHeaders | undefined {
  return cause.getStore();
}
