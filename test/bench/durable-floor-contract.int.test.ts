/**
 * The durable floor + contract (bench/durable-floor.ts with `contract`) is issue #12's proof that a CPU target is out
 * of reach of any implementation the contract's clients can use: that holds only if it does what CONTRACT.md
 * asks of a command. Served by benchFloor against a real nats-server, its replies and events are checked
 * here as a client and a subscriber would read them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import { benchFloor } from "../../bench/floor.js";
import { startLoadClient, type LoadClient } from "../../bench/load-client.js";
import { userIds } from "../../bench/durable-commands.js";
import { decodeMsgPack, EventSchemas } from "../../contracts/index.js";
import { validTraceparent } from "../../src/tracing/index.js";
import { useNatsWithStreams, type NatsServerHandle } from "../support/index.js";

const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("the durable floor + contract", () => {
  let nats: NatsServerHandle;
  let nc: NatsConnection;
  let load: LoadClient;
  // The floor makes its own stream.
  useNatsWithStreams((h) => ({ nats, nc } = h), async () => undefined);
  beforeAll(async () => {
    load = await startLoadClient(nats.url, "main");
  });
  afterAll(async () => {
    await load?.close();
  });

  it("answers and publishes as CONTRACT.md asks: the service API, the request's encoding, Nerve-Instance, a command id, the trace in the event's headers", async () => {
    const ids = userIds(10);
    const seen: { reply?: Msg; services?: number; plainEvent?: StoredMsg; tracedEvent?: StoredMsg } = {};
    // The bench's own load first (msgpack, no headers), then two commands of a client that sends the contract's headers.
    const probe: LoadClient = {
      placement: "main",
      async run(spec) {
        const r = await load.run(spec);
        const h = natsHeaders();
        h.set("Content-Type", "application/json");
        h.set("Correlation-Id", "corr-1");
        h.set("Causation-Id", "cause-1");
        h.set("traceparent", TRACEPARENT);
        seen.reply = await nc.request(`cmd.users.UpdateUserProfile.${ids[1]}`, JSON.stringify({ profile_data: { bio: "traced" } }), { headers: h, timeout: 10_000 });
        const plain = natsHeaders();
        plain.set("Content-Type", "application/json");
        await nc.request(`cmd.users.UpdateUserProfile.${ids[2]}`, JSON.stringify({ profile_data: { bio: "plain" } }), { headers: plain, timeout: 10_000 });
        seen.services = await nc.request("$SRV.PING.nerve-floor", undefined, { timeout: 5_000 }).then(() => 1, () => 0);
        // The events reach the stream after the replies: wait for both.
        const jsm = await jetstreamManager(nc);
        const deadline = Date.now() + 10_000;
        while ((await jsm.streams.info("BENCH_FLOOR")).state.messages < r.events + 2 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 20));
        const last = async (id: string) => (await jsm.streams.getMessage("BENCH_FLOOR", { last_by_subj: `bench.floor.${id}` }))!;
        seen.tracedEvent = await last(ids[1]!);
        seen.plainEvent = await last(ids[2]!);
        return r;
      },
      close: () => load.close(),
    };
    const result = await benchFloor(nats.url, probe, { ids, count: 40, inflight: 8, deadline: Date.now() + 30_000, durable: "contract" });
    expect(result.load.ok).toBe(40);
    expect(result.published).toBe(42);
    expect(seen.services).toBe(1);

    // The reply: in JSON, as the request was, naming the instance.
    const reply = seen.reply!;
    expect(reply.headers?.get("Content-Type")).toBe("application/json");
    expect(reply.headers?.get("Nerve-Instance")).toMatch(/^bench-floor-\d+$/);
    const answered = JSON.parse(new TextDecoder().decode(reply.data)) as { ok: boolean; aggregate_id: string; aggregate_version: number; events: { event_id: string }[] };
    expect(answered).toMatchObject({ ok: true, aggregate_id: ids[1], events: [{ event_type: "UserProfileUpdated" }] });

    // The traced command's event: a valid envelope, its ids from the headers, its trace carried on.
    const event = seen.tracedEvent!;
    const envelope = EventSchemas.UserProfileUpdated.parse((decodeMsgPack(event.data) as { ok: true; value: unknown }).value);
    expect(envelope).toMatchObject({ event_id: answered.events[0]!.event_id, aggregate_type: "User", aggregate_id: ids[1], aggregate_version: answered.aggregate_version, correlation_id: "corr-1", causation_id: "cause-1" });
    expect(event.header.get("Nats-Msg-Id")).toBe(envelope.event_id);
    expect(event.header.get("traceparent")).toBe(TRACEPARENT);
    expect(event.header.get("Event-Type")).toBe("UserProfileUpdated");

    // Without the headers: a fresh command id is both ids (not the event's id), and a new trace starts.
    const plain = seen.plainEvent!;
    const own = EventSchemas.UserProfileUpdated.parse((decodeMsgPack(plain.data) as { ok: true; value: unknown }).value);
    expect(own.correlation_id).toMatch(UUIDV7);
    expect(own.causation_id).toBe(own.correlation_id);
    expect(own.correlation_id).not.toBe(own.event_id);
    expect(validTraceparent(plain.header.get("traceparent"))).toBeDefined();
  });
});
