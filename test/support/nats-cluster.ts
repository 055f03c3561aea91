/**
 * A throw-away JetStream cluster on loopback for the failover tests: n nats-servers (n1…nN) on free
 * ports, each with its own temp store, routed to each other under one cluster name. Built on
 * {@link startNatsServer} (a temp conf file per node carries the name and the cluster block; the
 * launcher adds the client and monitoring ports and the store dir), so kill keeps a node's store and
 * restart brings it back on the same ports, as a crashed and restarted server.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { freePorts, startNatsServer, type NatsServerHandle } from "./nats-server.js";

/** Options of {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** Rewrite `cmd.*.*.*` to `pcmd.<partition>.…` on every node (CONTRACT.md §8's server mapping). Default false. */
  partitionMapping?: boolean;
  /** How long to wait for the JetStream meta leader after starting (default 30 s). */
  readyTimeoutMs?: number;
}

/** One node of a {@link NatsCluster}. */
export interface NatsClusterNode {
  /** server_name: n1, n2, … (stable across restarts: JetStream knows its peers by it). */
  readonly name: string;
  /** Client URL of this node. */
  readonly url: string;
  /** HTTP monitoring port (/jsz, /varz, /routez). */
  readonly httpPort: number;
  /** Pid of the current process (changes on restart). */
  readonly pid: number;
  /** Whether the process is up (not killed or stopped). */
  readonly running: boolean;
  /** SIGKILL by pid, keeping the store (a crash). */
  kill9(): Promise<void>;
  /** Starts it again on the same ports and store; resolves once it knows the meta leader again. */
  restart(): Promise<void>;
  /** SIGTERM, and removes its store. */
  stop(): Promise<void>;
}

/** A running JetStream cluster. */
export interface NatsCluster {
  /** Every node's client URL, comma-joined (NATS_URL). */
  readonly urls: string;
  readonly servers: NatsClusterNode[];
  /** The server_name leading `stream` now, or undefined while it has none (an election) or the API does not answer. */
  leaderOf(stream: string): Promise<string | undefined>;
  /** The JetStream meta leader by the monitoring endpoint of a running node, or undefined. */
  metaLeader(): Promise<string | undefined>;
  /** The cluster's own client connection (to every URL), e.g. for JetStream API calls. */
  connection(): Promise<NatsConnection>;
  /** Stops every node and removes the stores and conf files. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const MAPPING = `mappings: {\n  "cmd.*.*.*": "pcmd.{{partition(64,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"\n}\n`;

interface Jsz {
  meta_cluster?: { name?: string; leader?: string; cluster_size?: number; replicas?: { name: string; current?: boolean; offline?: boolean }[] };
}

async function jsz(httpPort: number): Promise<Jsz | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/jsz`, { signal: AbortSignal.timeout(1000) });
    return res.ok ? ((await res.json()) as Jsz) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts `n` clustered JetStream servers and resolves once every one of them sees the same meta
 * leader (JetStream API calls work from then on).
 */
export async function startNatsCluster(n = 3, opts: NatsClusterOptions = {}): Promise<NatsCluster> {
  const readyMs = opts.readyTimeoutMs ?? 30_000;
  const confDir = await mkdtemp(join(tmpdir(), "nerve-nats-cluster-"));
  const clusterPorts = await freePorts(n);
  const routes = clusterPorts.map((p) => `    nats-route://127.0.0.1:${p}`).join("\n");
  const handles: (NatsServerHandle | undefined)[] = new Array(n).fill(undefined);
  const running: boolean[] = new Array(n).fill(false);
  let nc: NatsConnection | undefined;
  let jsm: JetStreamManager | undefined;

  const stopAll = async (): Promise<void> => {
    await nc?.close().catch(() => undefined);
    nc = undefined;
    jsm = undefined;
    await Promise.all(handles.map((h) => h?.stop().catch(() => undefined)));
    running.fill(false);
    await rm(confDir, { recursive: true, force: true });
  };

  const metaLeaderOn = async (i: number): Promise<string | undefined> => (running[i] ? (await jsz(handles[i]!.httpPort))?.meta_cluster?.leader || undefined : undefined);

  try {
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const conf = join(confDir, `n${i + 1}.conf`);
        // No store_dir, listen or http here: the launcher sets them (-sd, -p, -m) per node.
        await writeFile(
          conf,
          `server_name: n${i + 1}\n` +
            (opts.partitionMapping ? MAPPING : "") +
            `cluster {\n  name: nerve-test\n  listen: 127.0.0.1:${clusterPorts[i]}\n  routes: [\n${routes}\n  ]\n}\n`,
        );
        handles[i] = await startNatsServer({ config: conf });
        running[i] = true;
      }),
    );
    const deadline = Date.now() + readyMs;
    for (;;) {
      const leaders = await Promise.all(handles.map((_, i) => metaLeaderOn(i)));
      if (leaders[0] !== undefined && leaders.every((l) => l === leaders[0])) break;
      if (Date.now() > deadline) throw new Error(`no JetStream meta leader agreed on by all ${n} nodes within ${readyMs} ms (saw ${JSON.stringify(leaders)})`);
      await sleep(100);
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  const urls = handles.map((h) => h!.url);
  const connection = async (): Promise<NatsConnection> => {
    nc ??= await connect({ servers: urls, noAsyncTraces: true, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    return nc;
  };

  const servers: NatsClusterNode[] = handles.map((h, i) => ({
    name: `n${i + 1}`,
    url: h!.url,
    httpPort: h!.httpPort,
    get pid() {
      return running[i] ? h!.pid : -1;
    },
    get running() {
      return running[i]!;
    },
    async kill9() {
      running[i] = false;
      await h!.kill();
    },
    async restart() {
      await h!.restart();
      running[i] = true;
      const deadline = Date.now() + readyMs;
      while ((await metaLeaderOn(i)) === undefined) {
        if (Date.now() > deadline) throw new Error(`n${i + 1} restarted but saw no meta leader within ${readyMs} ms`);
        await sleep(100);
      }
    },
    async stop() {
      running[i] = false;
      await h!.stop();
    },
  }));

  return {
    urls: urls.join(","),
    servers,
    async leaderOf(stream) {
      try {
        jsm ??= await jetstreamManager(await connection(), { checkAPI: false, timeout: 1000 });
        return (await jsm.streams.info(stream)).cluster?.leader || undefined;
      } catch {
        return undefined;
      }
    },
    async metaLeader() {
      for (let i = 0; i < n; i++) {
        const l = await metaLeaderOn(i);
        if (l) return l;
      }
      return undefined;
    },
    connection,
    stop: stopAll,
  };
}
