/**
 * A partition's subscription while the partition moves between two instances, on a real nats-server.
 * Without the server mapping, instances forward a command by a plain publish carrying the caller's reply
 * subject: while nobody subscribes `pcmd.<p>.>` nobody answers it, and its caller loses a whole timeout.
 * So the former owner's subscription lingers, answering `unavailable`, until the next owner says it
 * serves the partition; and both are in one queue group, so no request is answered twice.
 */
import { EventEmitter } from "node:events";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { createInbox, type NatsConnection } from "@nats-io/nats-core";
import type { ServiceMsg } from "@nats-io/services";
import { PartitionSubscriptions } from "../../src/api/routing.js";
import type { Fence, Ownership, OwnershipEvents } from "../../src/cluster/index.js";
import { createLogger } from "../../src/log/index.js";
import { startNatsServer, type NatsServerHandle } from "../support/index.js";

const P = 7;
const SUBJECT = `pcmd.${P}.users.UpdateUserProfile.u-1`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Leases in memory: which partitions this instance holds, changed by the test. */
class HeldPartitions extends EventEmitter<OwnershipEvents> implements Ownership {
  readonly #held = new Set<number>();
  constructor(
    readonly instanceId: string,
    /** False: the only instance (SQLite), which nobody takes partitions from. */
    readonly fenced = true,
  ) {
    super();
  }
  fence(partition: number): Fence | undefined {
    return this.#held.has(partition) ? { partition, epoch: 1 } : undefined;
  }
  held(): number[] {
    return [...this.#held];
  }
  acquire(p: number): void {
    this.#held.add(p);
    this.emit("acquired", p, 1);
  }
  lose(p: number): void {
    this.#held.delete(p);
    this.emit("lost", p);
  }
}

/** One instance: its connection, ownership and subscriptions; answers `<id>` as owner, `unavailable` otherwise. */
async function instance(url: string, id: string, lingerMs = 1500, fenced = true) {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  const ownership = new HeldPartitions(id, fenced);
  const answer = (msg: ServiceMsg) => msg.respond(new TextEncoder().encode(ownership.fence(P) ? `ok ${id}` : `unavailable ${id}`));
  const subs = new PartitionSubscriptions(nc, ownership, answer, createLogger("silent"), lingerMs);
  await subs.start();
  return { nc, ownership, subs };
}

describe("a partition's subscription through a hand-off", () => {
  let nats: NatsServerHandle;
  /** Gets the answers on its inbox; the forwarder publishes (another connection: the server sends no "no responders" status then). */
  let caller: NatsConnection;
  let forwarder: NatsConnection;
  const answers = new Map<string, string[]>();
  const prefix = createInbox();
  const open: NatsConnection[] = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    caller = await connect({ servers: nats.url, noAsyncTraces: true });
    forwarder = await connect({ servers: nats.url, noAsyncTraces: true });
    caller.subscribe(`${prefix}.>`, { callback: (_err, m) => void answers.get(m.subject)?.push(m.string()) });
  });
  afterEach(async () => {
    for (const nc of open.splice(0)) await nc.close();
  });
  afterAll(async () => {
    await caller?.close();
    await forwarder?.close();
    await nats?.stop();
  });

  /** Forwards like an instance without the mapping: a plain publish with a reply subject; the answers it got after `ms`. */
  async function forwarded(ms = 300): Promise<string[]> {
    const reply = `${prefix}.${answers.size}`;
    answers.set(reply, []);
    await caller.flush();
    forwarder.publish(SUBJECT, "{}", { reply });
    await forwarder.flush();
    await sleep(ms);
    return answers.get(reply)!;
  }

  it("lingers after the partition is lost, answering `unavailable`, and lets go once the next owner serves it", async () => {
    const a = await instance(nats.url, "a");
    const b = await instance(nats.url, "b");
    open.push(a.nc, b.nc);
    a.ownership.acquire(P);
    await a.nc.flush();
    expect(await forwarded()).toEqual(["ok a"]);

    a.ownership.lose(P);
    expect(a.subs.partitions, "no longer served as owner").toEqual([]);
    expect(await forwarded(), "answered, not dropped into a subject nobody subscribes").toEqual(["unavailable a"]);

    b.ownership.acquire(P);
    await sleep(200); // b subscribes, flushes, announces; a drains
    const after = await Promise.all(Array.from({ length: 20 }, () => forwarded()));
    expect(after.flat()).toEqual(Array.from({ length: 20 }, () => "ok b"));
  });

  it("lets go after the linger when no next owner comes; then nobody answers", async () => {
    const a = await instance(nats.url, "a", 300);
    open.push(a.nc);
    a.ownership.acquire(P);
    await a.nc.flush();
    a.ownership.lose(P);
    expect(await forwarded(100)).toEqual(["unavailable a"]);
    await sleep(400);
    expect(await forwarded(200)).toEqual([]);
  });

  it("answers each request once while the old and new owners' subscriptions overlap", async () => {
    // b serves the partition; a takes it too, then loses it and lingers for long: nothing announces the
    // partition after that, so both subscriptions stay through the whole run.
    const b = await instance(nats.url, "b");
    open.push(b.nc);
    b.ownership.acquire(P);
    await b.nc.flush();
    await sleep(100);
    const a = await instance(nats.url, "a", 60_000);
    open.push(a.nc);
    a.ownership.acquire(P);
    await a.nc.flush();
    a.ownership.lose(P); // lingers: nothing announces after this
    const got = await Promise.all(Array.from({ length: 60 }, () => forwarded(500)));
    expect(got.every((g) => g.length === 1), JSON.stringify(got)).toBe(true);
    expect(new Set(got.flat()), "both took some (one queue group)").toEqual(new Set(["ok b", "unavailable a"]));
  });

  it("stops at once when it is the only instance: nobody will take its partitions", async () => {
    // A linger far past the test's own timeout: a stop that lingered would time the test out.
    const a = await instance(nats.url, "a", 10 * 60_000, false);
    open.push(a.nc);
    a.ownership.acquire(P);
    await a.nc.flush();
    await a.subs.stop();
    expect(await forwarded(200)).toEqual([]);
  });

  it("serves on when the partition comes back before its subscription went", async () => {
    const a = await instance(nats.url, "a", 60_000);
    open.push(a.nc);
    a.ownership.acquire(P);
    a.ownership.lose(P);
    a.ownership.acquire(P);
    await a.nc.flush();
    expect(a.subs.partitions).toEqual([P]);
    expect(await forwarded()).toEqual(["ok a"]);
    a.ownership.lose(P);
    expect(a.subs.partitions).toEqual([]);
  });
});
