import { describe, expect, it } from "vitest";
import { ClosedConnectionError, NoRespondersError, RequestError, TimeoutError } from "@nats-io/nats-core";
import { JetStreamApiError, JetStreamStatusError, jserrors } from "@nats-io/jetstream/internal";
import { JetStreamUnavailableError, isTransientJetStreamError, retryTransient } from "../../src/nats/index.js";

const apiError = (err_code: number, code: number, description: string) => new JetStreamApiError({ err_code, code, description });
const noResponders = () => new RequestError("no responders: 'events.users.x'", { cause: new NoRespondersError("events.users.x") });

describe("isTransientJetStreamError", () => {
  it.each([
    ["jetstream is not enabled (no responders during a stream leader election)", new jserrors.JetStreamNotEnabled("jetstream is not enabled", { cause: noResponders() })],
    ["a timeout", new TimeoutError()],
    ["no responders, as a request error", noResponders()],
    ["no responders, bare", new NoRespondersError("$JS.API.INFO")],
    ["a request cut by a disconnect", new RequestError("connection disconnected")],
    ["JetStream system temporarily unavailable (10008)", apiError(10008, 503, "JetStream system temporarily unavailable")],
    ["cluster can not handle request (10009)", apiError(10009, 500, "JetStream cluster can not handle request")],
    ["stream is offline (10118)", apiError(10118, 500, "stream is offline")],
    ["a 503 status of a pull", new JetStreamStatusError("no responders", 503)],
  ])("is true for %s", (_, err) => {
    expect(isTransientJetStreamError(err)).toBe(true);
  });

  it.each([
    ["stream not found", jserrors.StreamNotFoundError.fromMessage("stream not found")],
    ["replicas > 1 on a single server (10074)", apiError(10074, 500, "replicas > 1 not supported in non-clustered mode")],
    ["JetStream not enabled for the account (10039: configuration)", apiError(10039, 503, "JetStream not enabled for account")],
    ["insufficient resources (10023)", apiError(10023, 503, "insufficient resources")],
    ["a closed connection", new ClosedConnectionError()],
    ["a request cancelled by a closed connection", new RequestError("connection closed")],
    ["an ordinary error", new Error("stream EVENTS_USERS conflicts with the contract")],
    ["a string", "jetstream is not enabled"],
    ["undefined", undefined],
  ])("is false for %s", (_, err) => {
    expect(isTransientJetStreamError(err)).toBe(false);
  });
});

describe("retryTransient", () => {
  it("retries transient failures with growing waits until the call succeeds", async () => {
    let calls = 0;
    const warnings: unknown[] = [];
    const logger = { warn: (obj: unknown) => void warnings.push(obj) } as never;
    const result = await retryTransient(
      "test",
      async () => {
        if (++calls < 4) throw new jserrors.JetStreamNotEnabled("jetstream is not enabled");
        return "done";
      },
      { logger, initialDelayMs: 5, maxMs: 5_000 },
    );
    expect(result).toBe("done");
    expect(calls).toBe(4);
    expect(warnings).toMatchObject([
      { attempt: 1, retry_in_ms: 5 },
      { attempt: 2, retry_in_ms: 10 },
      { attempt: 3, retry_in_ms: 20 },
    ]);
  });

  it("throws any other failure at once", async () => {
    let calls = 0;
    const err = await retryTransient("test", async () => {
      calls++;
      throw new Error("conflict");
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe("conflict");
    expect(calls).toBe(1);
  });

  it("gives up after its bound, saying what it waited for and why", async () => {
    // A bound of 200 ms: were it ignored, the retries would go on past the test's own timeout.
    let calls = 0;
    const err = await retryTransient(
      "ensuring X",
      () => {
        calls++;
        return Promise.reject(new TimeoutError());
      },
      { initialDelayMs: 20, maxDelayMs: 20, maxMs: 200 },
    ).catch((e: unknown) => e);
    expect(calls, "retried before giving up").toBeGreaterThan(1);
    expect(err).toBeInstanceOf(JetStreamUnavailableError);
    expect((err as Error).message).toMatch(/^ensuring X: JetStream still unavailable after [\d.]+ s and \d+ attempts \(last: timeout\)$/);
    expect((err as Error).cause).toBeInstanceOf(TimeoutError);
  });

  it("stops retrying once its signal aborts: the wait ends at once and the last failure is thrown", async () => {
    const ctl = new AbortController();
    let calls = 0;
    // A first wait far past the test's own timeout: only the abort can end it in time.
    const retrying = retryTransient(
      "ensuring X",
      async () => {
        calls++;
        throw new TimeoutError();
      },
      { initialDelayMs: 10 * 60_000, maxMs: 60 * 60_000, signal: ctl.signal },
    ).catch((e: unknown) => e);
    setTimeout(() => ctl.abort(), 50);
    const err = await retrying;
    expect(err).toBeInstanceOf(TimeoutError);
    expect(calls).toBe(1);
  });
});
