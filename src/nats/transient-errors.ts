/**
 * Which JetStream failures pass by themselves, and a bounded retry for start-up. On a clustered
 * nats-server a stream or meta leader election takes seconds (4–9 s on 2.9); meanwhile nats.js reports
 * publishes and API calls as "jetstream is not enabled" (no responders), timeouts, or "temporarily
 * unavailable" — none of which means the configuration is wrong.
 */
import type { Logger } from "../log/index.js";
import { sleep } from "../supervision/index.js";

/**
 * JetStream API error codes that end by themselves once the cluster has (re-)elected its leaders or
 * caught up: 10008 system temporarily unavailable, 10009 cluster can not handle request (not the
 * leader), 10118 stream offline, 10119 consumer offline; and, from newer servers, 10163 expected last
 * sequence per subject temporarily unavailable, 10167 too many requests, 10202 member change in progress.
 */
export const TRANSIENT_API_CODES: ReadonlySet<number> = new Set([10008, 10009, 10118, 10119, 10163, 10167, 10202]);

/**
 * Whether `err` is a JetStream failure that a retry after a short wait can cure: "jetstream is not
 * enabled" (nats.js's name for no responders, as during a stream leader election), no responders,
 * timeouts, a connection dropped before its reconnect, and the API's own "temporarily unavailable"
 * family. Names and codes are compared rather than classes, so two copies of nats.js agree.
 */
export function isTransientJetStreamError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: unknown; cause?: unknown };
  switch (e.name) {
    case "JetStreamNotEnabled":
    case "TimeoutError":
    case "NoResponders":
      return true;
    case "RequestError":
      // Wraps no responders, and a request cut by a disconnect (the client reconnects by itself).
      return (e.cause instanceof Error && e.cause.name === "NoResponders") || e.message === "connection disconnected";
    case "JetStreamApiError":
      return typeof e.code === "number" && TRANSIENT_API_CODES.has(e.code);
    case "JetStreamStatusError":
      return e.code === 503;
    default:
      return false;
  }
}

/** JetStream stayed unavailable for the whole retry budget; a later start may succeed (the cause says why). */
export class JetStreamUnavailableError extends Error {
  override readonly name = "JetStreamUnavailableError";
}

/** Options of {@link retryTransient}. */
export interface RetryTransientOptions {
  /** Logs each retry (at warn), so a slow start says what it is waiting for. */
  logger?: Logger;
  /** Gives up once this long has passed since the first attempt (default {@link START_RETRY_MS}). */
  maxMs?: number;
  /** First wait; doubled after each retry up to {@link RetryTransientOptions.maxDelayMs} (default 250 ms). */
  initialDelayMs?: number;
  /** Longest single wait (default 4 s): short enough to notice the election's end soon after it. */
  maxDelayMs?: number;
  /** Which failures to retry (default {@link isTransientJetStreamError}); any other is thrown at once. */
  retryable?: (err: unknown) => boolean;
  /** Ends the retries: once it aborts, the last failure is thrown instead of waiting for the next attempt. */
  signal?: AbortSignal;
}

/** How long start-up waits out a JetStream that is electing its leaders: several elections' worth on 2.9. */
export const START_RETRY_MS = 30_000;

/**
 * Runs `fn`, retrying it with exponential back-off while it fails transiently, for at most `maxMs`;
 * then throws {@link JetStreamUnavailableError} with the last failure as its cause. `fn` must be safe to
 * run again after a failure whose effect is unknown (a timed-out request may have been carried out).
 */
export async function retryTransient<T>(what: string, fn: () => Promise<T>, opts: RetryTransientOptions = {}): Promise<T> {
  const maxMs = opts.maxMs ?? START_RETRY_MS;
  const retryable = opts.retryable ?? isTransientJetStreamError;
  const started = Date.now();
  let delay = opts.initialDelayMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!retryable(err) || opts.signal?.aborted) throw err;
      const elapsed = Date.now() - started;
      const reason = err instanceof Error ? err.message : String(err);
      if (elapsed + delay > maxMs) {
        throw new JetStreamUnavailableError(`${what}: JetStream still unavailable after ${(elapsed / 1000).toFixed(1)} s and ${attempt} attempts (last: ${reason})`, { cause: err });
      }
      opts.logger?.warn({ err: reason, attempt, retry_in_ms: delay }, `${what}: JetStream is unavailable for now (a leader election?); retrying`);
      await sleep(delay, opts.signal);
      if (opts.signal?.aborted) throw err;
      delay = Math.min(opts.maxDelayMs ?? 4000, delay * 2);
    }
  }
}
