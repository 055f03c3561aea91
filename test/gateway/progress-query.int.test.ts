import { describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack, deriveAccessId, encodeMsgPack } from "../../contracts/index.js";
import { ProgressQuery } from "../../src/gateway/progress-query.js";
import { createLogger } from "../../src/log/index.js";
import { until, useNatsWithStreams, type NatsServerHandle } from "../support/index.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
useNatsWithStreams((h) => ({ nats, nc } = h));

const item = (user: string) => ({ access_id: deriveAccessId(user, "c"), user_id: user, course_id: "c", status: "active", progress: 7, completed: false, expires_at: null, order_id: null, version: 2 });

/**
 * A GetLearnerProgress responder on the test's connection: `x…` answered with an error (internal), `u…`
 * unavailable, `z…` with a reply that is not the contract's, `w…` never, `h…` when the test releases it,
 * anyone else with one record.
 */
async function responder() {
  const asked: string[] = [];
  const held: (() => void)[] = [];
  const sub = nc.subscribe("query.access.GetLearnerProgress", {
    callback: (_err, msg) => {
      const body = decodeMsgPack(msg.data);
      const user = body.ok ? (body.value as { user_id: string }).user_id : "";
      asked.push(user);
      const ok = () => msg.respond(encodeMsgPack({ ok: true, result: { items: [item(user)] } }));
      if (user.startsWith("x")) msg.respond(encodeMsgPack({ ok: false, error: { code: "internal", message: "GetLearnerProgress failed" } }));
      else if (user.startsWith("u")) msg.respond(encodeMsgPack({ ok: false, error: { code: "unavailable", message: "queries waiting" } }));
      else if (user.startsWith("z")) msg.respond(encodeMsgPack({ ok: true, result: { rows: [] } }));
      else if (user.startsWith("h")) held.push(ok);
      else if (!user.startsWith("w")) ok();
    },
  });
  await nc.flush();
  return { asked, held, stop: () => sub.unsubscribe() };
}

async function query(timeoutMs = 200) {
  const qnc = await connect({ servers: nats.url, noAsyncTraces: true });
  return { q: new ProgressQuery(qnc, createLogger("silent"), timeoutMs), close: () => qnc.close() };
}

describe("GetLearnerProgress for welcomes", () => {
  it("asks once for the welcomes of one learner that ask at the same time", async () => {
    const r = await responder();
    const { q, close } = await query(10_000);
    try {
      const both = [q.get("hal"), q.get("hal")];
      await until("the request is held", () => r.held.length > 0);
      r.held.shift()!();
      expect(await Promise.all(both)).toEqual([[item("hal")], [item("hal")]]);
      expect(r.asked).toEqual(["hal"]);
      // Done: the next welcome asks again.
      const next = q.get("hal");
      await until("the request is held", () => r.held.length > 0);
      r.held.shift()!();
      expect(await next).toEqual([item("hal")]);
      expect(r.asked).toEqual(["hal", "hal"]);
    } finally {
      r.stop();
      await close();
    }
  });

  it("backs off only the learner whose query failed: an error reply, a reply not the contract's, a timeout", async () => {
    const r = await responder();
    const { q, close } = await query();
    try {
      for (const failing of ["xav", "zed", "wyn"]) {
        expect(await q.get(failing)).toBeUndefined();
        expect(await q.get(failing)).toBeUndefined(); // not asked again for a while
        expect(await q.get("yan")).toEqual([item("yan")]);
      }
      expect(r.asked).toEqual(["xav", "yan", "zed", "yan", "wyn", "yan"]);
    } finally {
      r.stop();
      await close();
    }
  });

  it("backs off every learner when nobody answers: no responders, an unavailable reply (the service's), or timeouts in a row", async () => {
    const first = await query();
    const second = await query();
    const third = await query();
    let r: Awaited<ReturnType<typeof responder>> | undefined;
    try {
      expect(await first.q.get("ann")).toBeUndefined(); // no responders
      r = await responder();
      expect(await first.q.get("yan")).toBeUndefined();
      expect(r.asked).toEqual([]);
      // Three timeouts in a row (no reply between them): the query side counts as down.
      for (const w of ["w1", "w2", "w3"]) expect(await second.q.get(w)).toBeUndefined();
      expect(await second.q.get("yan")).toBeUndefined();
      expect(r.asked).toEqual(["w1", "w2", "w3"]);
      // `unavailable` says the query side is full or stopping: nobody asks for a while.
      expect(await third.q.get("uma")).toBeUndefined();
      expect(await third.q.get("yan")).toBeUndefined();
      expect(r.asked).toEqual(["w1", "w2", "w3", "uma"]);
    } finally {
      r?.stop();
      await first.close();
      await second.close();
      await third.close();
    }
  });
});
