/**
 * Routing of commands to their partition's owner (CONTRACT.md §8). Every instance holds a plain
 * subscription `pcmd.<p>.>` for each partition it owns. With the server mapping, nats-server rewrites
 * `cmd.<ctx>.<Type>.<id>` to `pcmd.<p>.…` and a request reaches the owner with no extra hop. Without
 * it, every instance takes `cmd.<ctx>.>` in the service's queue group and forwards a request it does
 * not own to `pcmd.<p>.…` with the caller's reply subject, so the owner still answers the caller.
 */
import { headers as natsHeaders, nuid, type Msg, type NatsConnection, type PublishOptions, type Subscription } from "@nats-io/nats-core";
import type { ServiceMsg } from "@nats-io/services";
import type { Ownership } from "../cluster/index.js";
import { PARTITION_SUBJECT_PREFIX } from "../cluster/index.js";
import type { Logger } from "../log/index.js";
import { watch } from "../supervision/index.js";

/** How commands reach owners here: the server's mapping, or forwarding between instances. */
export type RoutingMode = "mapped" | "forward";

/**
 * Finds out whether the account maps `cmd.*.*.*` to partitions: one request-shaped message to a
 * context no instance serves, and whichever of its two possible subjects it arrives on.
 */
export async function detectRouting(nc: NatsConnection, timeoutMs = 1000): Promise<RoutingMode> {
  const id = nuid.next();
  const plain = `cmd.nerveprobe.Probe.${id}`;
  let resolve!: (mode: RoutingMode) => void;
  const seen = new Promise<RoutingMode>((r) => (resolve = r));
  const subs = [nc.subscribe(plain, { callback: () => resolve("forward") }), nc.subscribe(`${PARTITION_SUBJECT_PREFIX}.*.nerveprobe.Probe.${id}`, { callback: () => resolve("mapped") })];
  try {
    await nc.flush();
    nc.publish(plain);
    const timer = new Promise<RoutingMode>((r) => setTimeout(() => r("forward"), timeoutMs).unref());
    return await Promise.race([seen, timer]);
  } finally {
    for (const s of subs) s.unsubscribe();
  }
}

/** A core NATS message answered like a service request (the contract's error headers included). */
export function serviceMsgOf(m: Msg): ServiceMsg {
  return {
    get data() {
      return m.data;
    },
    get sid() {
      return m.sid;
    },
    get subject() {
      return m.subject;
    },
    get reply() {
      return m.reply ?? "";
    },
    get headers() {
      return m.headers;
    },
    respond: (data?: Uint8Array, opts?: PublishOptions) => m.respond(data, opts),
    respondError(code: number, description: string, data?: Uint8Array, opts?: PublishOptions) {
      const o = { ...opts, headers: opts?.headers ?? natsHeaders() };
      o.headers.set("Nats-Service-Error-Code", `${code}`);
      o.headers.set("Nats-Service-Error", description);
      return m.respond(data, o);
    },
    json: <T>() => m.json<T>(),
    string: () => m.string(),
  } as ServiceMsg;
}

/** Keeps one `pcmd.<p>.>` subscription per held partition, following the ownership. */
export class PartitionSubscriptions {
  readonly #subs = new Map<number, Subscription>();
  readonly #onAcquired = (p: number) => this.#subscribe(p);
  readonly #onLost = (p: number) => this.#unsubscribe(p);

  constructor(
    private readonly nc: NatsConnection,
    private readonly ownership: Ownership,
    private readonly handle: (msg: ServiceMsg) => void,
    private readonly logger: Logger,
  ) {}

  /** Subscribes the partitions held now and follows acquisitions and losses; resolves once the server has them. */
  async start(): Promise<void> {
    this.ownership.on("acquired", this.#onAcquired);
    this.ownership.on("lost", this.#onLost);
    for (const p of this.ownership.held()) this.#subscribe(p);
    await this.nc.flush();
  }

  /** The partitions subscribed now. */
  get partitions(): number[] {
    return [...this.#subs.keys()].sort((a, b) => a - b);
  }

  /** Stops following the ownership and drops every subscription. */
  stop(): void {
    this.ownership.off("acquired", this.#onAcquired);
    this.ownership.off("lost", this.#onLost);
    for (const p of [...this.#subs.keys()]) this.#unsubscribe(p);
  }

  #subscribe(p: number): void {
    if (this.#subs.has(p)) return;
    this.#subs.set(p, this.nc.subscribe(`${PARTITION_SUBJECT_PREFIX}.${p}.>`, { callback: (err, m) => (err ? this.logger.warn({ err, partition: p }, "partition subscription failed") : this.handle(serviceMsgOf(m))) }));
    // A request sent right after an acquisition should find the subscription on the server.
    watch(this.logger, "partition subscription flush", this.nc.flush());
  }

  #unsubscribe(p: number): void {
    this.#subs.get(p)?.unsubscribe();
    this.#subs.delete(p);
  }
}
