/**
 * partitionOf must be nats-server's `{{partition(64,3)}}`: a private server carries the shipped
 * mapping (deploy/nats/partition-mapping.conf), and every command sent to `cmd.…` must arrive on
 * `pcmd.<partitionOf(id)>.…`. Also pins what the mapping means for permissions (CONTRACT.md §8).
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import { PARTITIONS, parsePartitionSubject, partitionOf } from "../../src/cluster/index.js";
import { startNatsServer, type NatsServerHandle } from "../support/index.js";

const SNIPPET = fileURLToPath(new URL("../../deploy/nats/partition-mapping.conf", import.meta.url));
const TIMEOUT_MS = 5_000;

// The include is resolved next to this file, so the shipped snippet is copied beside it.
const CONF = `
accounts {
  NERVE {
    include "partition-mapping.conf"
    users: [
      { user: nerve, password: nerve-test }
      { user: client, password: client-test, permissions: { publish: ["cmd.>", "pcmd.>"], subscribe: "_INBOX.>" } }
      # Allowed cmd.> only, as before partition routing.
      { user: legacy, password: legacy-test, permissions: { publish: "cmd.>", subscribe: "_INBOX.>" } }
    ]
  }
}
`;

const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
function randomId(): string {
  const bytes = randomBytes(65);
  const length = 1 + (bytes[64]! & 63);
  let id = "";
  for (let i = 0; i < length; i++) id += ID_ALPHABET[bytes[i]! & 63];
  return id;
}

const EDGE_IDS = ["-", "_", "0", "7", "0123456789", "9".repeat(64), "a".repeat(64), "-".repeat(64), "_-_", "Z", "u1", "x".repeat(63)];

let dir: string;
let server: NatsServerHandle;
const opened: NatsConnection[] = [];
const unmappedSeen: string[] = [];
const arrived: string[] = [];

async function login(user: string, pass: string): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url, user, pass, noAsyncTraces: true });
  opened.push(nc);
  return nc;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nerve-mapping-"));
  await copyFile(SNIPPET, join(dir, "partition-mapping.conf"));
  await writeFile(join(dir, "nats.conf"), CONF);
  server = await startNatsServer({ config: join(dir, "nats.conf") });
  const nerve = await login("nerve", "nerve-test");
  // Answers with the subject the server delivered: the mapped one.
  nerve.subscribe("pcmd.>", {
    callback: (_err, msg) => {
      arrived.push(msg.subject);
      msg.respond(msg.subject);
    },
  });
  // Today's Nerve serves cmd.<context>.>: with the mapping on it must see nothing.
  nerve.subscribe("cmd.>", {
    callback: (_err, msg) => {
      unmappedSeen.push(msg.subject);
    },
  });
  await nerve.flush();
});

afterAll(async () => {
  await Promise.allSettled(opened.map((nc) => nc.close()));
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("{{partition(64,3)}}", () => {
  it("routes every command to pcmd.<partitionOf(id)>.… for 2,000 random contract ids and the edge ids", async () => {
    const client = await login("client", "client-test");
    const ids = [...new Set([...EDGE_IDS, ...Array.from({ length: 2_000 }, randomId)])];
    const mismatches: string[] = [];
    const partitionsSeen = new Set<number>();
    // In batches, so the replies' inbox is never flooded and a slow 2-core runner stays well inside the timeout.
    for (let i = 0; i < ids.length; i += 250) {
      await Promise.all(
        ids.slice(i, i + 250).map(async (id) => {
          const reply = await client.request(`cmd.users.RegisterUser.${id}`, "{}", { timeout: TIMEOUT_MS });
          const expected = `pcmd.${partitionOf(id)}.users.RegisterUser.${id}`;
          if (reply.string() !== expected) mismatches.push(`${id}: server ${reply.string()}, ours ${expected}`);
          const parsed = parsePartitionSubject(reply.string());
          if (parsed) partitionsSeen.add(parsed.partition);
        }),
      );
    }
    expect(mismatches).toEqual([]);
    expect(partitionsSeen.size).toBe(PARTITIONS);
    expect(unmappedSeen).toEqual([]);
  });

  it("leaves other subjects alone: a query is not mapped", async () => {
    const client = await login("nerve", "nerve-test");
    const sub = client.subscribe("query.users.GetUser", { max: 1 });
    await client.flush();
    client.publish("query.users.GetUser", "{}");
    for await (const msg of sub) expect(msg.subject).toBe("query.users.GetUser");
  });
});

describe("permissions under the mapping", () => {
  it("are checked on the mapped subject: a user allowed only cmd.> is refused its own command", async () => {
    const legacy = await login("legacy", "legacy-test");
    const id = "legacy1";
    const mapped = `pcmd.${partitionOf(id)}.users.RegisterUser.${id}`;
    const statuses = legacy.status();
    const violation = (async () => {
      for await (const s of statuses) {
        if (s.type === "error" && s.error instanceof errors.PermissionViolationError) return s.error;
      }
      throw new Error("connection closed before a permission violation arrived");
    })();
    // Handled at once as well: if the test fails before awaiting it, its rejection is not an unhandled one
    // (which would fail the whole run even when a retry of the test passes).
    violation.catch(() => undefined);
    try {
      // The -ERR names the mapped subject, which the client never sent, so nats.js cannot pin it on
      // the request: such a caller sees a timeout, not a permission error.
      const outcome = await legacy.request(`cmd.users.RegisterUser.${id}`, "{}", { timeout: 1_000 }).then(
        () => "answered",
        (e: unknown) => e,
      );
      expect(outcome).toBeInstanceOf(errors.TimeoutError);
      expect(await violation).toMatchObject({ operation: "publish", subject: mapped });
    } finally {
      (statuses as { stop?: () => void }).stop?.();
    }
    expect(arrived).not.toContain(mapped);
  });
});
