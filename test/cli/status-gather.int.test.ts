/**
 * `nerve status` gathering the instances' answers: one that answers but cannot read its status (its
 * database failing); members named by the answers waited for (one paused past 500 ms was left out, its
 * partitions reported owned by nobody), and named when they do not answer.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { headers } from "@nats-io/nats-core";
import { encodeJson, errorReply, errors } from "../../contracts/index.js";
import { AdminSubjects } from "../../src/api/admin-subjects.js";
import { INSTANCE_HEADER } from "../../src/api/wire.js";
import { gatherInstances } from "../../src/cli/status-report.js";
import { startNatsServer, type NatsServerHandle } from "../support/index.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, noAsyncTraces: true });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("gathering the instances' status", () => {
  it("names an instance whose answer is an error (was: left out, as if absent: its partitions unowned, its consumers nowhere)", async () => {
    const sub = nc.subscribe(AdminSubjects.Status, {
      callback: (_err, msg) => {
        const h = headers();
        h.set(INSTANCE_HEADER, "nerve-b");
        msg.respond(encodeJson(errorReply(errors.unavailable("could not read the instance's status: canceling statement due to statement timeout"))), { headers: h });
      },
    });
    await nc.flush();
    try {
      const failures: string[] = [];
      expect(await gatherInstances(nc, 1000, failures)).toEqual([]);
      expect(failures).toEqual(["nerve-b answered but could not read its status: could not read the instance's status: canceling statement due to statement timeout"]);
    } finally {
      sub.unsubscribe();
    }
  });

  it("takes no responders for no instance, without a failure", async () => {
    const failures: string[] = [];
    expect(await gatherInstances(nc, 500, failures)).toEqual([]);
    expect(failures).toEqual([]);
  });

  /** Answers the status request as instance `id`, naming `members`, after `delayMs`; never when delayMs is undefined. */
  const instance = (id: string, members: string[] | undefined, delayMs: number | undefined) =>
    nc.subscribe(AdminSubjects.Status, {
      callback: (_err, msg) => {
        if (delayMs === undefined) return;
        const h = headers();
        h.set(INSTANCE_HEADER, id);
        const result = { instance: id, partitions: [], ...(members ? { members } : {}) };
        setTimeout(() => msg.respond(encodeJson({ ok: true, result }), { headers: h }), delayMs);
      },
    });

  it("waits for every live member the answers name: one that answers 800 ms after the first counts (was: left out after 500 ms of quiet)", async () => {
    const subs = [instance("a", ["a", "b"], 0), instance("b", ["a", "b"], 800)];
    await nc.flush();
    try {
      const missing: string[] = [];
      const t0 = performance.now();
      const got = await gatherInstances(nc, 3000, [], missing);
      expect(got.map((i) => i.instance)).toEqual(["a", "b"]);
      expect(missing).toEqual([]);
      // Done once both answered, not at --wait.
      expect(performance.now() - t0).toBeLessThan(2500);
    } finally {
      for (const s of subs) s.unsubscribe();
    }
  });

  it("names a live member that does not answer within --wait", async () => {
    const subs = [instance("a", ["a", "c"], 0), instance("c", ["a", "c"], undefined)];
    await nc.flush();
    try {
      const missing: string[] = [];
      const got = await gatherInstances(nc, 1200, [], missing);
      expect(got.map((i) => i.instance)).toEqual(["a"]);
      expect(missing).toEqual(["c"]);
    } finally {
      for (const s of subs) s.unsubscribe();
    }
  });

  it("without members named (SQLite: one instance), ends 500 ms after the last answer, not at --wait", async () => {
    const sub = instance("solo", undefined, 0);
    await nc.flush();
    try {
      const t0 = performance.now();
      expect((await gatherInstances(nc, 10_000)).map((i) => i.instance)).toEqual(["solo"]);
      expect(performance.now() - t0).toBeLessThan(3000);
    } finally {
      sub.unsubscribe();
    }
  });
});
