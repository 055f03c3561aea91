/** NERVE_STREAM_REPLICAS against a single nats-server: 1 matches; a mismatch or an impossible count is a clear start-up error. */
import { beforeEach, describe, expect, it } from "vitest";
import type { JetStreamManager } from "@nats-io/jetstream";
import { Streams } from "../../contracts/index.js";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { StreamReplicasError, ensureStreams } from "../../src/nats/index.js";
import { captureLog, tempSqlitePath, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";

/** A retry bound no test lives to see (the int tests time out after 60 s). */
const NEVER_MS = 10 * 60_000;

let nats: NatsServerHandle;
let jsm: JetStreamManager;
// No streams made up front: each test starts from none (beforeEach) and makes what it needs.
useNatsWithStreams((h) => ({ nats, jsm } = h), async () => undefined);
beforeEach(async () => {
  for (const s of Object.values(Streams)) await jsm.streams.delete(s.name).catch(() => false);
});

describe("stream replicas", () => {
  it("creates the streams with 1 replica by default and accepts them when 1 is asked for again", async () => {
    await ensureStreams(jsm);
    await ensureStreams(jsm, { replicas: 1 });
    for (const s of Object.values(Streams)) expect((await jsm.streams.info(s.name)).config.num_replicas).toBe(1);
  });

  it("refuses existing R1 streams when NERVE_STREAM_REPLICAS=3, naming the stream, both counts and the remedy, without waiting", async () => {
    await ensureStreams(jsm, { replicas: 1 });
    const log = captureLog("warn");
    // Were the refusal taken for a passing outage, it would be retried (and logged) until far past the test's timeout.
    const err = await ensureStreams(jsm, { replicas: 3, logger: log.logger, retryMs: NEVER_MS }).catch((e: unknown) => e);
    expect(log.lines, "not retried").toEqual([]);
    expect((err as Error).message).toBe(
      "stream EVENTS_USERS has 1 replica but NERVE_STREAM_REPLICAS is 3: set NERVE_STREAM_REPLICAS=1, or change the stream to 3 " +
        "(`nats stream edit EVENTS_USERS --replicas 3`; more than 1 needs a JetStream cluster of at least that many servers) — Nerve never changes an existing stream",
    );
    // Nothing was changed.
    expect((await jsm.streams.info("EVENTS_USERS")).config.num_replicas).toBe(1);
  });

  it("says that 3 replicas need a cluster of 3 servers when a single server cannot create them, without waiting", async () => {
    const log = captureLog("warn");
    const err = await ensureStreams(jsm, { replicas: 3, logger: log.logger, retryMs: NEVER_MS }).catch((e: unknown) => e);
    expect(log.lines, "not retried").toEqual([]);
    expect(err).toBeInstanceOf(StreamReplicasError);
    expect((err as Error).message).toBe(
      "cannot create stream EVENTS_USERS with 3 replicas: 3 replicas need a JetStream cluster of at least 3 servers " +
        "(nats-server: replicas > 1 not supported in non-clustered mode); run such a cluster or set NERVE_STREAM_REPLICAS=1",
    );
  });

  it("stops the service's start on a mismatch, passing NERVE_STREAM_REPLICAS through", async () => {
    await ensureStreams(jsm);
    const db = await tempSqlitePath();
    const err = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: "0", NERVE_STREAM_REPLICAS: "3" }), createLogger("silent")).catch((e: unknown) => e);
    if (!(err instanceof Error)) await (err as Nerve).stop();
    expect(String((err as Error).message)).toMatch(/^stream EVENTS_USERS has 1 replica but NERVE_STREAM_REPLICAS is 3: /);
    await db.cleanup();
  });
});
