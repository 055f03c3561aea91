/**
 * A kill -9 of the nats-server leading a durable consumer (3-node cluster, R3): the reader's open pull
 * request dies with that leader, the new leader knows nothing of it, and the reader hears nothing — no
 * messages, no heartbeats — until nats.js counts two idle heartbeats missed and pulls again. Consumers
 * pull with a short expiry (runner.ts, PULL_EXPIRES_MS), so that is a few seconds after the election
 * (4–9 s on 2.9; 11 s here, restart included); with nats.js's default of 30 s (heartbeat 15 s) the reader
 * acknowledged nothing for 44 s (chaos run CHAOS_NATS=r3, seed 1038: consumers applied nothing for 12–32 s
 * after a node kill under load, the access-grants process manager among them, and every story waiting
 * on a grant with it).
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { outputsOf, postgresAvailable, registerUsers, retryingLoad, startR3Platform, until, type Instance, type NatsCluster, type R3Platform } from "../support/index.js";

const available = await postgresAvailable();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STREAM = "EVENTS_USERS";
const CONSUMER = "notifications";
/** Kill → the reader's first ack after it: the election (up to 9 s) and a short pull's two heartbeats missed, with room for a slow machine; 30 s pulls took 40 s. */
const BOUND_MS = 25_000;

describe.skipIf(!available)("kill -9 of the nats-server leading a durable consumer (3-node cluster, R3)", () => {
  let platform: R3Platform | undefined;
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let instances: Map<string, Instance>;
  const users = Array.from({ length: 50 }, (_, i) => `cl-${i}`);

  beforeAll(async () => {
    platform = await startR3Platform();
    ({ cluster, nc, instances } = platform);
    expect(await registerUsers(nc, users), outputsOf(instances.values())).toEqual([]);
  }, 90_000);

  afterAll(() => platform?.tearDown());

  it("the consumer acknowledges events again within seconds of its leader's kill, not after nats.js's 30 s pull has lapsed twice over", async () => {
    const jsm = await jetstreamManager(await cluster.connection(), { checkAPI: false, timeout: 2000 });
    const floor = async () => (await jsm.consumers.info(STREAM, CONSUMER)).ack_floor.stream_seq;
    const load = retryingLoad(nc, users, 4, "leader");
    onTestFinished(() => load.stop());
    const start = await floor();
    // The reader keeps up with the load: its ack floor, on the durable's leader, moves.
    await until(`${CONSUMER} acknowledges the load`, async () => (await floor()) >= start + 200, 30_000, 200);

    const info = await jsm.consumers.info(STREAM, CONSUMER);
    const leader = info.cluster?.leader;
    const victim = cluster.servers.find((s) => s.name === leader);
    expect(victim, `${STREAM}/${CONSUMER} has a leader`).toBeDefined();
    const killedAt = Date.now();
    await victim!.kill9();
    // By then the load's events of the kill's seconds are in the stream, past the floor (the stream's own election included).
    await sleep(6000);
    await victim!.restart();
    // The floor the new leader has may be below the one acknowledged to the old (an ack not yet replicated): moved past the old one's, the reader is pulling again.
    const before = info.ack_floor.stream_seq;
    let movedMs: number | undefined;
    let last: unknown;
    await until(
      `${CONSUMER}'s ack floor moves past ${before} after the kill`,
      async () => {
        const now = await jsm.consumers.info(STREAM, CONSUMER).catch((e: Error) => e);
        last = now instanceof Error ? String(now) : { leader: now.cluster?.leader, pending: now.num_pending, ack_pending: now.num_ack_pending, waiting: now.num_waiting, delivered: now.delivered.stream_seq, ack_floor: now.ack_floor.stream_seq };
        if (!(now instanceof Error) && now.ack_floor.stream_seq > before) movedMs = Date.now() - killedAt;
        return movedMs !== undefined;
      },
      90_000,
      200,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; ${load.acked.length} acknowledged; last look ${JSON.stringify(last)}\n${outputsOf(instances.values(), 4000)}`);
    });
    await load.stop();
    console.info(`consumer leader ${leader} kill -9 → ${CONSUMER}'s ack floor moved again after ${movedMs} ms (load: ${load.acked.length} acknowledged, ${load.retries} retries; last look ${JSON.stringify(last)})`);
    expect(load.gaveUp).toEqual([]);
    expect(movedMs, `kill → ${CONSUMER}'s first ack after it (ms)`).toBeLessThan(BOUND_MS);
  }, 150_000);
});
