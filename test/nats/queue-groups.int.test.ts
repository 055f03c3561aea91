/**
 * What the request API's catch-all endpoints (`cmd-any` on cmd.>, `query-any` on query.>, src/api/service.ts)
 * rely on from nats-server 2.9.10: queue subscriptions of one name are one group across the subjects a
 * message matches (server/sublist.go, addNodeToResults/findQSlot), so a command on cmd.users.… goes to one
 * of {cmd.users.>, cmd.>} in queue `q`, never to both — on one server, and across a cluster's routes with
 * an "old" instance (per-context subscriptions only) beside a "new" one (both). A queue of another name
 * gets its own copy: the name is what counts.
 */
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { startNatsCluster, startNatsServer, until, type NatsCluster, type NatsServerHandle } from "../support/index.js";

const MESSAGES = 300;
const closing: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closing.reverse()) await c().catch(() => undefined);
});

/** Subscribes `subjects` in `queue` on `nc`, counting each subscription's deliveries by its label. */
function count(nc: NatsConnection, subs: { label: string; subject: string; queue: string }[], got: Map<string, number>): void {
  for (const { label, subject, queue } of subs) nc.subscribe(subject, { queue, callback: () => void got.set(label, (got.get(label) ?? 0) + 1) });
}

/** Resolves once `publisher` reaches a plain subscription made on `subscriber` after its others: the route carries interest in order. */
async function propagated(publisher: NatsConnection, subscriber: NatsConnection, name: string): Promise<void> {
  let seen = false;
  subscriber.subscribe(`ready.${name}`, { callback: () => void (seen = true) });
  await subscriber.flush();
  await until(`${name}'s subscriptions reached the publisher's server`, async () => {
    publisher.publish(`ready.${name}`);
    await publisher.flush();
    await new Promise((r) => setTimeout(r, 20));
    return seen;
  }, 10_000);
}

async function sendAll(publisher: NatsConnection, subject: (i: number) => string): Promise<void> {
  for (let i = 0; i < MESSAGES; i++) publisher.publish(subject(i));
  await publisher.flush();
}

const total = (got: Map<string, number>, labels: string[]) => labels.reduce((n, l) => n + (got.get(l) ?? 0), 0);

describe("queue groups across subjects (nats-server 2.9.10)", () => {
  it("on one server: a message matching cmd.users.> and cmd.> in queue q goes to one of them; another queue name gets its own copy", async () => {
    const nats: NatsServerHandle = await startNatsServer();
    closing.push(() => nats.stop());
    const nc = await connect({ servers: nats.url, noAsyncTraces: true });
    closing.push(() => nc.close());
    const got = new Map<string, number>();
    count(nc, [
      { label: "context", subject: "cmd.users.>", queue: "q" },
      { label: "any", subject: "cmd.>", queue: "q" },
      { label: "other queue", subject: "cmd.>", queue: "audit" },
    ], got);
    await nc.flush();
    await sendAll(nc, (i) => `cmd.users.RegisterUser.u${i}`);
    await sendAll(nc, (i) => `cmd.nosuch.DoIt.u${i}`);
    await until("every message arrived", () => total(got, ["context", "any"]) >= 2 * MESSAGES && (got.get("other queue") ?? 0) >= 2 * MESSAGES, 10_000);
    // Anything delivered twice would have arrived by now too.
    await new Promise((r) => setTimeout(r, 200));
    // Known context: once between the two (both took some); unknown context: cmd.> alone.
    expect(total(got, ["context", "any"])).toBe(2 * MESSAGES);
    expect(got.get("context")).toBeGreaterThan(0);
    expect(got.get("context")).toBeLessThan(MESSAGES);
    expect(got.get("any")).toBeGreaterThan(MESSAGES);
    expect(got.get("other queue")).toBe(2 * MESSAGES);
  });

  it("across a cluster's routes: an older instance with cmd.users.> only and a newer one with both, each message delivered once", async () => {
    const cluster: NatsCluster = await startNatsCluster(3);
    closing.push(() => cluster.stop());
    const [a, b, c] = cluster.servers as [NatsCluster["servers"][0], NatsCluster["servers"][0], NatsCluster["servers"][0]];
    const older = await connect({ servers: a.url, noAsyncTraces: true });
    const newer = await connect({ servers: b.url, noAsyncTraces: true });
    const caller = await connect({ servers: c.url, noAsyncTraces: true });
    closing.push(() => older.close(), () => newer.close(), () => caller.close());
    const got = new Map<string, number>();
    count(older, [{ label: "older context", subject: "cmd.users.>", queue: "q" }], got);
    count(newer, [
      { label: "newer context", subject: "cmd.users.>", queue: "q" },
      { label: "newer any", subject: "cmd.>", queue: "q" },
    ], got);
    await propagated(caller, older, "older");
    await propagated(caller, newer, "newer");
    await sendAll(caller, (i) => `cmd.users.RegisterUser.u${i}`);
    const all = ["older context", "newer context", "newer any"];
    await until("every message arrived", () => total(got, all) >= MESSAGES, 10_000);
    // Anything delivered twice would have arrived by now too.
    await new Promise((r) => setTimeout(r, 300));
    await Promise.all([older.flush(), newer.flush()]);
    expect(total(got, all)).toBe(MESSAGES);
    for (const label of all) expect(got.get(label) ?? 0, `${label} took none of ${MESSAGES}: ${JSON.stringify([...got])}`).toBeGreaterThan(0);
  }, 60_000);
});
