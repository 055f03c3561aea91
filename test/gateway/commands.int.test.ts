import { describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { AckFrame, deriveAccessId } from "../../contracts/index.js";
import { ensureStreams } from "../../src/nats/index.js";
import { query, startNatsServer, type TestNerve } from "../support/index.js";
import { TestClient, grant, startTestGateway, useNerveAndGateway, type TestGateway } from "./support.js";

let t: TestNerve;
let gw: TestGateway;
useNerveAndGateway((started) => ({ t, gw } = started));

describe("client commands", () => {
  it("runs UpdateProgress on the command path for the token's user, acks it, and pushes its events", async () => {
    await grant(t.client, "ada", "algebra");
    const ada = await TestClient.ready(gw.port, "ada");
    ada.send({ type: "UpdateProgress", request_id: "r1", course_id: "algebra", progress: 55 });
    expect(AckFrame.parse(await ada.ack("r1"))).toEqual({ type: "ack", request_id: "r1", ok: true });
    await ada.until((c) => c.events.some((f) => f.event.event_type === "ProgressUpdated" && f.event.payload.progress === 55));
    const view = await query(t.client, "access", "GetAccess", { access_id: deriveAccessId("ada", "algebra") });
    expect(view.body.result.progress).toBe(55);
    await ada.close();
  });

  it("answers the contract's error code when the command fails", async () => {
    const bob = await TestClient.ready(gw.port, "bob");
    // Ada's course, but Bob's token: the gateway derives Bob's access id, which does not exist.
    bob.send({ type: "UpdateProgress", request_id: "not-mine", course_id: "algebra", progress: 90 });
    expect(await bob.ack("not-mine")).toMatchObject({ ok: false, error: { code: "not_found" } });
    const ada = await query(t.client, "access", "GetAccess", { access_id: deriveAccessId("ada", "algebra") });
    expect(ada.body.result.progress).toBe(55);
    await bob.close();
  });

  it("acks malformed frames with invalid_request and keeps the socket open", async () => {
    await grant(t.client, "carol", "chemistry");
    const carol = await TestClient.ready(gw.port, "carol");
    const bad: unknown[] = [
      "not json",
      "null",
      "[1,2]",
      JSON.stringify({ type: "Hack", request_id: "x1" }),
      JSON.stringify({ type: "UpdateProgress", request_id: "x2", course_id: "chemistry", progress: 101 }),
      JSON.stringify({ type: "UpdateProgress", request_id: "x3", course_id: "a.b", progress: 5 }),
      JSON.stringify({ type: "UpdateProgress", request_id: "x4", course_id: "chemistry", progress: 5, user_id: "ada" }),
      JSON.stringify({ type: "UpdateProgress", request_id: "y".repeat(200), course_id: "chemistry", progress: 5 }),
      Buffer.from([0x82, 0xa1, 0x61, 0x01]),
      JSON.stringify({ type: "UpdateProgress", request_id: "x5", course_id: "chemistry", progress: 5, pad: "z".repeat(200_000) }),
    ];
    for (const frame of bad) carol.send(frame);
    await carol.until((c) => c.frames.filter((f) => f.type === "ack").length === bad.length);
    const acks = carol.frames.filter((f) => f.type === "ack");
    for (const a of acks) {
      expect(AckFrame.parse(a)).toMatchObject({ ok: false, error: { code: "invalid_request" } });
    }
    expect(acks.map((a) => a.request_id)).toEqual([null, null, null, "x1", "x2", "x3", "x4", null, null, null]);
    // Still open and working.
    carol.send({ type: "UpdateProgress", request_id: "good", course_id: "chemistry", progress: 5 });
    expect(await carol.ack("good")).toMatchObject({ ok: true });
    expect(carol.closed).toBeUndefined();
    const metrics = await (await fetch(`http://127.0.0.1:${gw.port}/metrics`)).text();
    expect(metrics).toMatch(/nerve_gateway_commands_total\{result="invalid_request"\} 10/);
    expect(metrics).toMatch(/nerve_gateway_commands_total\{result="ok"\} 2/);
    expect(metrics).toMatch(/nerve_gateway_commands_total\{result="not_found"\} 1/);
    await carol.close();
  });

  it("echoes a request_id of 128 characters counted as the contract counts them (code points), even on a refused frame", async () => {
    // Found by ws.props.int.test.ts: 128 emoji are 256 UTF-16 units, and the gateway used to drop such an id from the ack.
    const erin = await TestClient.ready(gw.port, "erin");
    const id = "😀".repeat(128);
    erin.send({ type: "UpdateProgress", request_id: id, course_id: "chemistry", progress: 500 });
    expect(AckFrame.parse(await erin.ack(id))).toMatchObject({ request_id: id, ok: false, error: { code: "invalid_request" } });
    erin.send({ type: "UpdateProgress", request_id: "😀".repeat(129), course_id: "chemistry", progress: 500 });
    expect(await erin.ack(null)).toMatchObject({ ok: false, error: { code: "invalid_request" } });
    await erin.close();
  });

  it("echoes no request_id that is not contract text (a NUL, a lone surrogate): the ack stays readable by a strict decoder", async () => {
    const fay = await TestClient.ready(gw.port, "fay");
    // Valid JSON text frames: JSON.stringify escapes both ("\u0000", "\ud800").
    for (const id of ["nul\u0000", "lone\ud800", "low\udc00 first"]) fay.send({ type: "UpdateProgress", request_id: id, course_id: "chemistry", progress: 5 });
    fay.send({ type: "UpdateProgress", request_id: "after", course_id: "chemistry", progress: 500 });
    await fay.ack("after");
    const acks = fay.frames.filter((f) => f.type === "ack");
    expect(acks.map((a) => [a.request_id, a.error?.code])).toEqual([
      [null, "invalid_request"],
      [null, "invalid_request"],
      [null, "invalid_request"],
      ["after", "invalid_request"],
    ]);
    await fay.close();
  });

  it("answers unavailable when no command path answers", async () => {
    const nats = await startNatsServer();
    const nc = await connect({ servers: nats.url });
    await ensureStreams(await jetstreamManager(nc));
    const lonely = await startTestGateway(nats.url);
    try {
      const dave = await TestClient.as(lonely.port, "dave");
      expect((await dave.welcome()).progress).toEqual([]);
      dave.send({ type: "UpdateProgress", request_id: "r", course_id: "drawing", progress: 5 });
      expect(await dave.ack("r")).toMatchObject({ ok: false, error: { code: "unavailable" } });
      await dave.close();
    } finally {
      await lonely.close();
      await nc.close();
      await nats.stop();
    }
  });
});
