import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, StorageType, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { partitionOf } from "../../src/cluster/index.js";
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
  for (const durable of ["analytics", "notifications"]) {
    // 2.9.10 knows only the single filter_subject form.
    await jsm.consumers.add("EVENTS_ACCESS", { durable_name: durable, ack_policy: AckPolicy.Explicit, filter_subject: STREAMS.EVENTS_ACCESS });
  }
  nerve.subscribe("cmd.>", {
    callback: (_err, msg) => {
      commandsSeen.push(msg.subject);
      msg.respond(`accepted ${msg.subject}`);
    },
  });
  await nerve.flush();
  const ack = await jetstream(nerve).publish(EVENT_SUBJECT, JSON.stringify({ progress: 42 }));
  expect(ack).toMatchObject({ stream: "EVENTS_ACCESS", seq: 1 });
});

afterAll(async () => {
  await Promise.allSettled(opened.map((nc) => nc.close()));
  await server?.stop();
});

describe("nats.conf", () => {
  it("is accepted by nats-server -t", async () => {
    const { stdout, stderr } = await promisify(execFile)(natsServerBinary(), ["-c", "nats.conf", "-t"], { cwd: REPO });
    expect(stdout + stderr).toContain("configuration file nats.conf is valid");
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
  it("sends a command and reads the reply", async () => {
    const client = await login("client", "client-dev");
    const reply = await client.request("cmd.users.RegisterUser.u1", JSON.stringify({ email: "u1@x" }), { timeout: 5_000 });
    expect(reply.string()).toBe("accepted cmd.users.RegisterUser.u1");
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
});

describe("analytics user", () => {
  it("reads the event through its durable consumer and acks it", async () => {
    const analytics = await login("analytics", "analytics-dev");
    const consumer = await jetstream(analytics).consumers.get("EVENTS_ACCESS", "analytics");
    const msg = await consumer.next({ expires: 5_000 });
    expect(msg?.subject).toBe(EVENT_SUBJECT);
    expect(msg?.json()).toEqual({ progress: 42 });
    expect(await msg?.ackAck()).toBe(true);
    const info = await jsm.consumers.info("EVENTS_ACCESS", "analytics");
    expect(info.ack_floor.stream_seq).toBe(1);
    expect(info.num_ack_pending).toBe(0);
  });

  it("is refused another consumer (notifications)", async () => {
    const analytics = await login("analytics", "analytics-dev");
    await expectRequestDenied(
      jetstream(analytics).consumers.get("EVENTS_ACCESS", "notifications"),
      "$JS.API.CONSUMER.INFO.EVENTS_ACCESS.notifications",
    );
    await expectRequestDenied(
      analytics.request("$JS.API.CONSUMER.MSG.NEXT.EVENTS_ACCESS.notifications", JSON.stringify({ batch: 1 }), { timeout: 5_000 }),
      "$JS.API.CONSUMER.MSG.NEXT.EVENTS_ACCESS.notifications",
    );
    expect((await jsm.consumers.info("EVENTS_ACCESS", "notifications")).num_pending).toBe(1);
  });

  it("is refused creating a consumer or a stream", async () => {
    const analytics = await login("analytics", "analytics-dev");
    const ajsm = await jetstreamManager(analytics);
    await expectRequestDenied(
      ajsm.consumers.add("EVENTS_ACCESS", { durable_name: "sneaky", ack_policy: AckPolicy.Explicit }),
      "$JS.API.CONSUMER.CREATE.EVENTS_ACCESS.sneaky",
    );
    await expectRequestDenied(ajsm.streams.add({ name: "SNEAKY", subjects: ["sneaky.>"] }), "$JS.API.STREAM.CREATE.SNEAKY");
    const consumers = (await jsm.consumers.list("EVENTS_ACCESS").next()).map((c) => c.name).sort();
    expect(consumers).toEqual(["analytics", "notifications"]);
    expect((await jsm.streams.names().next()).sort()).toEqual(Object.keys(STREAMS).sort());
  });

  it("is refused publishing events and commands", async () => {
    const analytics = await login("analytics", "analytics-dev");
    for (const subject of ["events.access.ProgressUpdated.forged", "cmd.users.RegisterUser.u2"]) {
      await expectDenied(analytics, "publish", subject, () => {
        analytics.publish(subject, "{}");
        return analytics.flush();
      });
    }
    // The server drops a denied message before routing it, so the -ERR proves it never arrived.
    expect((await jsm.streams.info("EVENTS_ACCESS")).state.messages).toBe(1);
    expect(commandsSeen).not.toContain("cmd.users.RegisterUser.u2");
  });
});

// What partition routing will run on (CONTRACT.md §8): nats.conf with the shipped mapping included
// in the NERVE account, exactly as deploy/nats/partition-mapping.conf tells an operator to.
describe("nats.conf with deploy/nats/partition-mapping.conf", () => {
  let dir: string;
  let mapped: NatsServerHandle;
  const unmapped: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nerve-mapped-conf-"));
    const conf = (await readFile(CONF, "utf8")).replace(/^(  NERVE \{)$/m, `$1\n    include "${MAPPING}"`);
    expect(conf).toContain(`include "${MAPPING}"`);
    await mkdir(join(dir, "deploy/nats"), { recursive: true });
    await copyFile(join(REPO, MAPPING), join(dir, MAPPING));
    await writeFile(join(dir, "nats.conf"), conf);
    mapped = await startNatsServer({ config: join(dir, "nats.conf") });
    const nerve = await login("nerve", "nerve-dev", mapped);
    // Partition routing serves pcmd.> (here only the users context); today's Nerve serves cmd.<context>.>.
    nerve.subscribe("pcmd.*.users.>", {
      callback: (_err, msg) => {
        msg.respond(`accepted ${msg.subject}`);
      },
    });
    nerve.subscribe("cmd.>", {
      callback: (_err, msg) => {
        unmapped.push(msg.subject);
      },
    });
    await nerve.flush();
  });

  afterAll(async () => {
    await mapped?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("is accepted by nats-server -t", async () => {
    const { stdout, stderr } = await promisify(execFile)(natsServerBinary(), ["-c", "nats.conf", "-t"], { cwd: dir });
    expect(stdout + stderr).toContain("configuration file nats.conf is valid");
  });

  it("lets the client user send a command through cmd.…, delivered to the nerve user on pcmd.<partition>.…", async () => {
    const client = await login("client", "client-dev", mapped);
    const reply = await client.request("cmd.users.RegisterUser.u1", JSON.stringify({ email: "u1@x" }), { timeout: 5_000 });
    expect(reply.string()).toBe(`accepted pcmd.${partitionOf("u1")}.users.RegisterUser.u1`);
    expect(unmapped).toEqual([]);
  });

  it("no longer reaches a Nerve that serves only cmd.> (why the mapping is not in nats.conf yet)", async () => {
    const client = await login("client", "client-dev", mapped);
    const err = await client.request("cmd.courses.CreateCourse.c1", "{}", { timeout: 5_000 }).then(
      () => expect.fail("a cmd.> subscriber answered a mapped command"),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(errors.RequestError);
    expect((err as InstanceType<typeof errors.RequestError>).isNoResponders()).toBe(true);
    expect(unmapped).toEqual([]);
  });

  it("still refuses the analytics user commands, naming the mapped subject", async () => {
    const analytics = await login("analytics", "analytics-dev", mapped);
    const subject = `pcmd.${partitionOf("u2")}.users.RegisterUser.u2`;
    await expectDenied(analytics, "publish", subject, () => {
      analytics.publish("cmd.users.RegisterUser.u2", "{}");
      return analytics.flush();
    });
  });
});
