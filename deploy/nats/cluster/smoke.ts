/**
 * A live check of deploy/nats/cluster/: three nats-servers started from these very files (only
 * the addresses, store and pid paths rewritten to loopback and a temporary directory), then:
 *   - the three form one cluster with a JetStream meta leader (/healthz on each);
 *   - the nerve user creates an R3 stream, and it has a leader and two current replicas;
 *   - a command the client user sends to cmd.… on one server reaches Nerve's pcmd.<partition>.…
 *     subscription on another, with the partition Nerve computes (src/cluster/partition.ts);
 *   - the client user is refused publishing events, the analytics user sending commands;
 *   - lame duck mode (what compose's stop_signal and Kubernetes' preStop send) ignores SIGTERM
 *     and the server leaves by itself once its clients are gone.
 *
 *   node --import tsx deploy/nats/cluster/smoke.ts        (from the repository root; ~40 s)
 *
 * It needs nats-server on the PATH, in /usr/sbin, or in NATS_SERVER. It listens on 127.0.0.1 only
 * and stops every server it started (by PID) on the way out, also on failure.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import { StorageType, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { partitionOf } from "../../../src/cluster/index.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const PASSWORDS = { NATS_NERVE_PASSWORD: "nerve-smoke", NATS_CLIENT_PASSWORD: "client-smoke", NATS_ANALYTICS_PASSWORD: "analytics-smoke", NATS_SYS_PASSWORD: "sys-smoke" };
const DEADLINE_MS = 90_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function natsServer(): string {
  if (process.env.NATS_SERVER) return process.env.NATS_SERVER;
  for (const d of [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin"]) {
    try {
      accessSync(join(d, "nats-server"), constants.X_OK);
      return join(d, "nats-server");
    } catch {
      // not here
    }
  }
  throw new Error("nats-server not found (PATH, /usr/sbin, or NATS_SERVER)");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(200);
  }
}

/** Replaces `from` by `to` in `text`, failing when it is absent: a config that drifted must not pass silently. */
function swap(text: string, from: string, to: string, file: string): string {
  if (!text.includes(from)) throw new Error(`${file} no longer contains ${JSON.stringify(from)}: update smoke.ts`);
  return text.split(from).join(to);
}

interface Node {
  name: string;
  client: number;
  http: number;
  cluster: number;
  dir: string;
  proc?: ChildProcess;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`FAILED: ${what}`);
  console.log(`ok   ${what}`);
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "nerve-nats-cluster-smoke-"));
  const nodes: Node[] = [];
  for (const n of [1, 2, 3]) nodes.push({ name: `n${n}`, client: await freePort(), http: await freePort(), cluster: await freePort(), dir: join(root, `n${n}`) });
  const opened: NatsConnection[] = [];
  const stopAll = () => {
    for (const node of nodes) if (node.proc && node.proc.exitCode === null) node.proc.kill("SIGKILL");
  };
  process.once("exit", stopAll);
  const timer = setTimeout(() => {
    console.error(`smoke: no result within ${DEADLINE_MS} ms`);
    stopAll();
    process.exit(1);
  }, DEADLINE_MS);

  try {
    const [common, accounts, mapping] = await Promise.all(
      ["common.conf", "accounts.conf", "../partition-mapping.conf"].map((f) => readFile(join(HERE, f), "utf8")),
    );
    for (const [i, node] of nodes.entries()) {
      // The repository's layout, so accounts.conf's include "../partition-mapping.conf" is exercised as is.
      await mkdir(join(node.dir, "cluster"), { recursive: true });
      let c = common!;
      c = swap(c, "listen: 0.0.0.0:4222", `listen: 127.0.0.1:${node.client}`, "common.conf");
      c = swap(c, "http: 0.0.0.0:8222", `http: 127.0.0.1:${node.http}`, "common.conf");
      c = swap(c, "listen: 0.0.0.0:6222", `listen: 127.0.0.1:${node.cluster}`, "common.conf");
      c = swap(c, '"/data/jetstream"', JSON.stringify(join(node.dir, "jetstream")), "common.conf");
      c = swap(c, '"/var/run/nats/nats.pid"', JSON.stringify(join(node.dir, "nats.pid")), "common.conf");
      for (const [j, peer] of nodes.entries()) c = swap(c, `nats-route://nats-${j + 1}:6222`, `nats-route://127.0.0.1:${peer.cluster}`, "common.conf");
      await writeFile(join(node.dir, "cluster", "common.conf"), c);
      await writeFile(join(node.dir, "cluster", "accounts.conf"), accounts!);
      await writeFile(join(node.dir, "partition-mapping.conf"), mapping!);
      await writeFile(join(node.dir, "cluster", `n${i + 1}.conf`), await readFile(join(HERE, `n${i + 1}.conf`), "utf8"));
    }

    const binary = natsServer();
    for (const node of nodes) {
      node.proc = spawn(binary, ["-c", join(node.dir, "cluster", `${node.name}.conf`), "-l", join(node.dir, "server.log")], {
        env: { ...process.env, ...PASSWORDS },
        stdio: "ignore",
      });
    }

    // Full /healthz: server up, meta leader known, every stream replica current.
    await until("all three report /healthz ok", async () => {
      const rs = await Promise.all(nodes.map((n) => fetch(`http://127.0.0.1:${n.http}/healthz`)));
      return rs.every((r) => r.ok);
    });
    const varz = (await (await fetch(`http://127.0.0.1:${nodes[0]!.http}/varz`)).json()) as { server_name: string; cluster?: { name?: string } };
    check(varz.server_name === "n1" && varz.cluster?.name === "nerve", "n1 is server_name n1 in cluster nerve");
    await until("n1 has routes to both peers", async () => {
      const r = (await (await fetch(`http://127.0.0.1:${nodes[0]!.http}/routez`)).json()) as { num_routes: number };
      return r.num_routes >= 2;
    });
    check(true, "three nodes routed to each other; JetStream meta group has a leader");

    const login = async (user: string, pass: string, node: Node) => {
      const nc = await connect({ servers: `127.0.0.1:${node.client}`, user, pass, noAsyncTraces: true, reconnect: false });
      opened.push(nc);
      return nc;
    };

    // An R3 stream, as Nerve creates EVENTS_* with NERVE_STREAM_REPLICAS=3.
    const nerve = await login("nerve", PASSWORDS.NATS_NERVE_PASSWORD, nodes[0]!);
    const jsm = await jetstreamManager(nerve);
    await jsm.streams.add({ name: "EVENTS_SMOKE", subjects: ["events.smoke.>"], storage: StorageType.File, num_replicas: 3 });
    await until("the R3 stream has a leader and two current replicas", async () => {
      const info = await jsm.streams.info("EVENTS_SMOKE");
      return Boolean(info.cluster?.leader) && (info.cluster?.replicas ?? []).filter((r) => r.current).length === 2;
    });
    const js = jetstream(nerve);
    for (let i = 0; i < 10; i++) await js.publish(`events.smoke.Thing.t${i}`, `{"i":${i}}`);
    const info = await jsm.streams.info("EVENTS_SMOKE");
    check(info.config.num_replicas === 3 && info.state.messages === 10, `R3 stream stores on the leader ${info.cluster?.leader} and replicas ${info.cluster?.replicas?.map((r) => r.name).join(", ")}`);

    // The partition mapping, across servers: Nerve on n3, the client on n2.
    const owner = await login("nerve", PASSWORDS.NATS_NERVE_PASSWORD, nodes[2]!);
    const seen = new Map<string, string>();
    owner.subscribe("pcmd.>", {
      callback: (_e, m) => {
        seen.set(m.subject.split(".").slice(2).join("."), m.subject);
        m.respond("ok");
      },
    });
    await owner.flush();
    const client = await login("client", PASSWORDS.NATS_CLIENT_PASSWORD, nodes[1]!);
    const ids = ["u1", "u2", "course-42", "0", "x".repeat(64), "ZZ_top-9"];
    for (const id of ids) {
      const subject = `users.UpdateUserProfile.${id}`;
      await until(`a reply to cmd.${subject}`, async () => (await client.request(`cmd.${subject}`, "{}", { timeout: 1000 })).string() === "ok", 10_000);
      const expected = `pcmd.${partitionOf(id)}.${subject}`;
      check(seen.get(subject) === expected, `cmd.${subject} arrived as ${seen.get(subject)} (expected ${expected})`);
    }

    // Least privilege, on a server other than the one the account was tested on in nats-conf.int.test.ts.
    // `refused`: the subject the server names. With the mapping in force that is the MAPPED one for a
    // command (permissions are checked after the rewrite: CONTRACT.md §8).
    const denied = async (nc: NatsConnection, subject: string, refused = subject) => {
      const statuses = nc.status();
      const violation = (async () => {
        for await (const s of statuses) {
          const e = s.type === "error" ? s.error : undefined;
          if (e instanceof errors.PermissionViolationError && e.operation === "publish" && e.subject === refused) return true;
        }
        return false;
      })();
      nc.publish(subject, "{}");
      await nc.flush();
      const got = await Promise.race([violation, sleep(5000).then(() => false)]);
      (statuses as { stop?: () => void }).stop?.();
      return got;
    };
    check(await denied(client, "events.smoke.Thing.forged"), "client is refused publishing an event");
    const analytics = await login("analytics", PASSWORDS.NATS_ANALYTICS_PASSWORD, nodes[1]!);
    check(await denied(analytics, "cmd.users.UpdateUserProfile.u1", `pcmd.${partitionOf("u1")}.users.UpdateUserProfile.u1`), "analytics is refused sending a command (on the mapped subject)");
    check((await jsm.streams.info("EVENTS_SMOKE")).state.messages === 10, "nothing forged was stored");

    // Lame duck on n2 (what compose's SIGUSR2 and Kubernetes' preStop send), then SIGTERM, which it must ignore.
    const n2 = nodes[1]!;
    const done = new Promise<number | null>((r) => n2.proc!.once("exit", (code) => r(code)));
    const ldm = spawn(binary, ["--signal", `ldm=${join(n2.dir, "nats.pid")}`], { stdio: "ignore" });
    await new Promise((r) => ldm.once("exit", r));
    await sleep(500);
    n2.proc!.kill("SIGTERM");
    await sleep(1000);
    check(n2.proc!.exitCode === null, "n2 in lame duck mode ignores SIGTERM");
    const code = await Promise.race([done, sleep(45_000).then(() => "still running")]);
    check(code !== "still running", "n2 left by itself once lame duck mode closed its clients");
    await until("the stream is served by the two others", async () => (await jsm.streams.info("EVENTS_SMOKE")).state.messages === 10, 15_000);
    await js.publish("events.smoke.Thing.after", "{}");
    check((await jsm.streams.info("EVENTS_SMOKE")).state.messages === 11, "R3 stream takes writes with one node gone");
    console.log("smoke: all checks passed");
  } finally {
    clearTimeout(timer);
    await Promise.allSettled(opened.map((nc) => nc.close()));
    stopAll();
    await sleep(200);
    await rm(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
