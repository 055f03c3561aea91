import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, StorageType, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { partitionOf } from "../../src/cluster/index.js";
import { DEV_EXTERNAL_CONSUMERS, parseExternalConsumers } from "../../src/config/index.js";
import { NERVE_INBOX_PREFIX, ensureExternalConsumers } from "../../src/nats/index.js";
import { Consumers } from "../../contracts/index.js";
import { natsServerBinary, startNatsServer, type NatsServerHandle } from "../support/index.js";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const CONF = join(REPO, "nats.conf");
const MAPPING = "deploy/nats/partition-mapping.conf";
const DENIAL_TIMEOUT_MS = 5_000;
const STREAMS = {
  EVENTS_USERS: "events.users.>",
  EVENTS_COURSES: "events.courses.>",
  EVENTS_POLICIES: "events.policies.>",
  EVENTS_ORDERS: "events.orders.>",
  EVENTS_ACCESS: "events.access.>",
} as const;
const EVENT_SUBJECT = "events.access.ProgressUpdated.x";

let server: NatsServerHandle;
let nerve: NatsConnection;
let jsm: JetStreamManager;
const commandsSeen: string[] = [];
/** Commands that reached `cmd.>` unmapped: none may, the mapping rewrites every one. */
const unmapped: string[] = [];
const opened: NatsConnection[] = [];

async function login(user: string, pass: string, on: NatsServerHandle = server): Promise<NatsConnection> {
  const nc = await connect({ servers: on.url, user, pass, noAsyncTraces: true });
  opened.push(nc);
  return nc;
}

// Bounded wait: a permission that is wrongly granted must fail fast, not hang the suite.
async function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${DENIAL_TIMEOUT_MS}ms`)), DENIAL_TIMEOUT_MS);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Publish denials only surface as an async -ERR on status(), so we watch before acting.
async function expectDenied(
  nc: NatsConnection,
  operation: "publish" | "subscription",
  subject: string,
  act: () => unknown,
): Promise<void> {
  const statuses = nc.status();
  const seen = (async () => {
    for await (const s of statuses) {
      const e = s.type === "error" ? s.error : undefined;
      if (e instanceof errors.PermissionViolationError && e.subject === subject) return e;
    }
    throw new Error("connection closed before a permission violation arrived");
  })();
  // Handled at once as well: if the test fails before awaiting it, its rejection is not an unhandled one
  // (which would fail the whole run even when a retry of the test passes).
  seen.catch(() => undefined);
  try {
    await act();
    const err = await within(seen, `permission violation for ${subject}`);
    expect(err.operation).toBe(operation);
  } finally {
    (statuses as { stop?: () => void }).stop?.();
  }
}

// Denied requests reject with a RequestError whose cause names the refused subject.
async function expectRequestDenied(p: Promise<unknown>, subject: string): Promise<void> {
  const err = await p.then(
    () => expect.fail(`expected ${subject} to be refused`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(errors.RequestError);
  const cause = (err as Error).cause;
  expect(cause).toBeInstanceOf(errors.PermissionViolationError);
  expect(cause).toMatchObject({ operation: "publish", subject });
}

beforeAll(async () => {
  server = await startNatsServer({ config: CONF });
  nerve = await login("nerve", "nerve-dev");
  jsm = await jetstreamManager(nerve);
  for (const [name, subject] of Object.entries(STREAMS)) {
    await jsm.streams.add({ name, subjects: [subject], storage: StorageType.File });
  }
  // Nerve's own durables, as the service makes them (2.9.10 knows only the single filter_subject form).
  for (const durable of Object.values(Consumers)) {
    await jsm.consumers.add("EVENTS_ACCESS", { durable_name: durable, ack_policy: AckPolicy.Explicit, filter_subject: STREAMS.EVENTS_ACCESS, max_ack_pending: 1000 });
  }
  // The external durables `bi` of the development setup, provisioned as the service does at start.
  await ensureExternalConsumers(jsm, parseExternalConsumers(DEV_EXTERNAL_CONSUMERS));
  // nats.conf's NERVE account maps cmd.*.*.* to pcmd.<partition>.… (CONTRACT.md §8): Nerve serves those.
  nerve.subscribe("pcmd.>", {
    callback: (_err, msg) => {
      commandsSeen.push(msg.subject);
      msg.respond(`accepted ${msg.subject}`);
    },
  });
  nerve.subscribe("cmd.>", { callback: (_err, msg) => void unmapped.push(msg.subject) });
  await nerve.flush();
  const ack = await jetstream(nerve).publish(EVENT_SUBJECT, JSON.stringify({ progress: 42 }));
  expect(ack).toMatchObject({ stream: "EVENTS_ACCESS", seq: 1 });
});

afterAll(async () => {
  await Promise.allSettled(opened.map((nc) => nc.close()));
  await server?.stop();
});

describe("nats.conf", () => {
  it("is accepted by nats-server -t, the partition mapping included in the NERVE account", async () => {
    const { stdout, stderr } = await promisify(execFile)(natsServerBinary(), ["-c", "nats.conf", "-t"], { cwd: REPO });
    expect(stdout + stderr).toContain("configuration file nats.conf is valid");
    const conf = await readFile(CONF, "utf8");
    expect(conf.slice(conf.indexOf("  NERVE {"), conf.indexOf("users: [", conf.indexOf("  NERVE {")))).toContain(`include "${MAPPING}"`);
  });

  it("refuses a wrong password at connect", async () => {
    const err = await connect({ servers: server.url, user: "client", pass: "wrong", noAsyncTraces: true, reconnect: false }).then(
      (nc) => nc.close().then(() => expect.fail("connected with a wrong password")),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(errors.AuthorizationError);
  });
});

describe("client user", () => {
  it("sends a command to cmd.…, delivered on pcmd.<partition>.…, and reads the reply", async () => {
    const client = await login("client", "client-dev");
    const reply = await client.request("cmd.users.RegisterUser.u1", JSON.stringify({ email: "u1@x" }), { timeout: 5_000 });
    expect(reply.string()).toBe(`accepted pcmd.${partitionOf("u1")}.users.RegisterUser.u1`);
    expect(unmapped).toEqual([]);
  });

  it("is refused publishing an event, and nothing is stored", async () => {
    const client = await login("client", "client-dev");
    await expectDenied(client, "publish", "events.users.UserRegistered.u1", () => {
      client.publish("events.users.UserRegistered.u1", "{}");
      return client.flush();
    });
    expect((await jsm.streams.info("EVENTS_USERS")).state.messages).toBe(0);
  });

  it("is refused subscribing to events", async () => {
    const client = await login("client", "client-dev");
    const sub = client.subscribe("events.>");
    const closedWith = await within(sub.closed, "subscription close");
    expect(closedWith).toBeInstanceOf(errors.PermissionViolationError);
    expect(closedWith).toMatchObject({ operation: "subscription", subject: "events.>" });
    expect(sub.isClosed()).toBe(true);
  });

  it("is refused the JetStream API", async () => {
    const client = await login("client", "client-dev");
    await expectRequestDenied(client.request("$JS.API.STREAM.NAMES", "", { timeout: 5_000 }), "$JS.API.STREAM.NAMES");
  });

  it("reads nothing of Nerve's own inbox: its JetStream answers and deliveries (_INBOX_nerve) pass its _INBOX.> by, and subscribing there is refused", async () => {
    const client = await login("client", "client-dev");
    const tapped: string[] = [];
    client.subscribe("_INBOX.>", { callback: (_err, m) => void tapped.push(m.subject) });
    await client.flush();
    // Nerve's connection, as connectNats makes it: its inbox prefix is its own.
    const nerveConn = await connect({ servers: server.url, user: "nerve", pass: "nerve-dev", noAsyncTraces: true, inboxPrefix: NERVE_INBOX_PREFIX });
    opened.push(nerveConn);
    const info = await (await jetstreamManager(nerveConn)).streams.info("EVENTS_ACCESS");
    expect(info.config.name).toBe("EVENTS_ACCESS");
    await client.flush();
    expect(tapped).toEqual([]);
    const sub = client.subscribe(`${NERVE_INBOX_PREFIX}.>`);
    const closedWith = await within(sub.closed, "subscription close");
    expect(closedWith).toMatchObject({ operation: "subscription", subject: `${NERVE_INBOX_PREFIX}.>` });
  });
});

describe("nerve user", () => {
  it("is refused purging or deleting a stream or an event: no answer it is tricked into sending can destroy history", async () => {
    const nerveConn = await login("nerve", "nerve-dev");
    const njsm = await jetstreamManager(nerveConn);
    await expectRequestDenied(njsm.streams.purge("EVENTS_ACCESS"), "$JS.API.STREAM.PURGE.EVENTS_ACCESS");
    await expectRequestDenied(njsm.streams.delete("EVENTS_ACCESS"), "$JS.API.STREAM.DELETE.EVENTS_ACCESS");
    await expectRequestDenied(njsm.streams.deleteMessage("EVENTS_ACCESS", 1), "$JS.API.STREAM.MSG.DELETE.EVENTS_ACCESS");
    expect((await njsm.streams.info("EVENTS_ACCESS")).state.messages).toBeGreaterThanOrEqual(1);
  });
});

describe("analytics user", () => {
  it("reads the event with an ordered consumer (no durable, no acks)", async () => {
    const analytics = await login("analytics", "analytics-dev");
    const ordered = await jetstream(analytics).consumers.get("EVENTS_ACCESS", { filter_subjects: EVENT_SUBJECT });
    const msg = await ordered.next({ expires: 5_000 });
    expect(msg?.subject).toBe(EVENT_SUBJECT);
    expect(msg?.json()).toEqual({ progress: 42 });
    expect((await (await jetstreamManager(analytics, { checkAPI: false })).streams.info("EVENTS_ACCESS")).state.messages).toBe(1);
  });

  it("pulls from its durable bi and acks it, on every stream", async () => {
    const analytics = await login("analytics", "analytics-dev");
    const bi = await jetstream(analytics).consumers.get("EVENTS_ACCESS", "bi");
    const msg = await bi.next({ expires: 5_000 });
    expect(msg?.subject).toBe(EVENT_SUBJECT);
    expect(await msg?.ackAck()).toBe(true);
    const info = await jsm.consumers.info("EVENTS_ACCESS", "bi");
    expect(info.ack_floor.stream_seq).toBe(1);
    expect(info.num_ack_pending).toBe(0);
    for (const stream of Object.keys(STREAMS)) expect((await jsm.consumers.info(stream, "bi")).config.filter_subject).toBe(STREAMS[stream as keyof typeof STREAMS]);
  });

  it("is refused every one of Nerve's consumers: reading, info, creating over it, deleting it", async () => {
    const analytics = await login("analytics", "analytics-dev");
    for (const name of Object.values(Consumers)) {
      await expectRequestDenied(
        analytics.request(`$JS.API.CONSUMER.MSG.NEXT.EVENTS_ACCESS.${name}`, JSON.stringify({ batch: 1 }), { timeout: 5_000 }),
        `$JS.API.CONSUMER.MSG.NEXT.EVENTS_ACCESS.${name}`,
      );
      await expectRequestDenied(jetstream(analytics).consumers.get("EVENTS_ACCESS", name), `$JS.API.CONSUMER.INFO.EVENTS_ACCESS.${name}`);
      const ajsm = await jetstreamManager(analytics, { checkAPI: false });
      await expectRequestDenied(
        ajsm.consumers.add("EVENTS_ACCESS", { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject: STREAMS.EVENTS_ACCESS, max_ack_pending: 1 }),
        `$JS.API.CONSUMER.CREATE.EVENTS_ACCESS.${name}.${STREAMS.EVENTS_ACCESS}`,
      );
      await expectRequestDenied(ajsm.consumers.delete("EVENTS_ACCESS", name), `$JS.API.CONSUMER.DELETE.EVENTS_ACCESS.${name}`);
    }
    const info = await jsm.consumers.info("EVENTS_ACCESS", "analytics");
    expect(info.num_pending).toBe(1);
    expect(info.config.max_ack_pending).toBe(1000);
  });

  it("is refused creating or changing a durable through the forms that carry no name the server checks", async () => {
    const analytics = await login("analytics", "analytics-dev");
    const ajsm = await jetstreamManager(analytics, { checkAPI: false });
    // The 5-token subject: on 2.9.10 a body naming an existing consumer reconfigures it.
    const legacy = { stream_name: "EVENTS_ACCESS", config: { name: "analytics", ack_policy: "explicit", filter_subject: STREAMS.EVENTS_ACCESS, max_ack_pending: 1 } };
    await expectRequestDenied(analytics.request("$JS.API.CONSUMER.CREATE.EVENTS_ACCESS", JSON.stringify(legacy), { timeout: 5_000 }), "$JS.API.CONSUMER.CREATE.EVENTS_ACCESS");
    await expectRequestDenied(
      analytics.request("$JS.API.CONSUMER.DURABLE.CREATE.EVENTS_ACCESS.sneaky", JSON.stringify({ stream_name: "EVENTS_ACCESS", config: { durable_name: "sneaky", ack_policy: "explicit" } }), { timeout: 5_000 }),
      "$JS.API.CONSUMER.DURABLE.CREATE.EVENTS_ACCESS.sneaky",
    );
    // Its own durable bi: read and ack only.
    await expectRequestDenied(
      ajsm.consumers.add("EVENTS_ACCESS", { durable_name: "bi", ack_policy: AckPolicy.None, filter_subject: STREAMS.EVENTS_ACCESS }),
      `$JS.API.CONSUMER.CREATE.EVENTS_ACCESS.bi.${STREAMS.EVENTS_ACCESS}`,
    );
    await expectRequestDenied(ajsm.consumers.delete("EVENTS_ACCESS", "bi"), "$JS.API.CONSUMER.DELETE.EVENTS_ACCESS.bi");
    expect((await jsm.consumers.info("EVENTS_ACCESS", "analytics")).config.max_ack_pending).toBe(1000);
    expect((await jsm.consumers.info("EVENTS_ACCESS", "bi")).config.ack_policy).toBe(AckPolicy.Explicit);
  });

  it("is refused creating, purging or deleting a stream", async () => {
    const analytics = await login("analytics", "analytics-dev");
    const ajsm = await jetstreamManager(analytics, { checkAPI: false });
    await expectRequestDenied(ajsm.streams.add({ name: "SNEAKY", subjects: ["sneaky.>"] }), "$JS.API.STREAM.CREATE.SNEAKY");
    await expectRequestDenied(ajsm.streams.purge("EVENTS_ACCESS"), "$JS.API.STREAM.PURGE.EVENTS_ACCESS");
    await expectRequestDenied(ajsm.streams.delete("EVENTS_ACCESS"), "$JS.API.STREAM.DELETE.EVENTS_ACCESS");
    expect((await jsm.streams.names().next()).sort()).toEqual(Object.keys(STREAMS).sort());
    expect((await jsm.streams.info("EVENTS_ACCESS")).state.messages).toBe(1);
  });

  it("has the same permissions in deploy/nats/cluster/accounts.conf (only the password differs)", async () => {
    const block = (conf: string) => conf.slice(conf.indexOf("user: analytics"), conf.indexOf('subscribe: "_INBOX.>"', conf.indexOf("user: analytics")));
    const dev = block(await readFile(CONF, "utf8")).replace("analytics-dev", "$NATS_ANALYTICS_PASSWORD");
    expect(block(await readFile(join(REPO, "deploy/nats/cluster/accounts.conf"), "utf8"))).toBe(dev);
  });

  it("is refused publishing events and commands (a command refused by its mapped subject)", async () => {
    const analytics = await login("analytics", "analytics-dev");
    const mapped = `pcmd.${partitionOf("u2")}.users.RegisterUser.u2`;
    for (const [subject, refused] of [["events.access.ProgressUpdated.forged", "events.access.ProgressUpdated.forged"], ["cmd.users.RegisterUser.u2", mapped]] as const) {
      await expectDenied(analytics, "publish", refused, () => {
        analytics.publish(subject, "{}");
        return analytics.flush();
      });
    }
    // The server drops a denied message before routing it, so the -ERR proves it never arrived.
    expect((await jsm.streams.info("EVENTS_ACCESS")).state.messages).toBe(1);
    expect(commandsSeen).not.toContain(mapped);
    expect(unmapped).toEqual([]);
  });
});
