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
    // As @nats-io/services' own ServiceMsg: the message, whose header block wire.ts reads as it came.
    msg: m,
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

/** Where an instance says it now serves a partition (`<prefix>.<p>`, its instance id as the body): a former owner stops lingering. */
export const OWNED_SUBJECT_PREFIX = "nerve.cluster.owned";

/** Every instance's `pcmd.<p>.>` subscriptions share this queue group: a request reaches one of them, never two. */
export const PARTITION_QUEUE = "pcmd";

/** How long a lost partition's subscription stays at most, answering `unavailable`, until its next owner says it serves it. */
export const LINGER_MS = 1500;

/** A lost partition's subscription until its next owner has one. */
interface Lingering {
  sub: Subscription;
  timer: NodeJS.Timeout;
  /** Resolves once the subscription is drained, or serves on (the partition came back). */
  drained: Promise<void>;
  done: () => void;
}

/**
 * Keeps one `pcmd.<p>.>` subscription per held partition, following the ownership.
 *
 * A partition leaves without a moment in which nobody subscribes it: without the server mapping,
 * instances forward a request by a plain publish, which nobody answers (a whole timeout for its caller)
 * when the subscription is gone. So a lost partition's subscription lingers — every request it takes
 * answered `unavailable`, retried at once — until the next owner announces it has subscribed, or
 * {@link LINGER_MS}. The subscriptions are in one queue group, so while old and new overlap a request
 * reaches one of them only: never an `unavailable` from one for a command the other applied.
 */
export class PartitionSubscriptions {
  readonly #subs = new Map<number, Subscription>();
  readonly #lingering = new Map<number, Lingering>();
  #owned: Subscription | undefined;
  readonly #onAcquired = (p: number) => this.#subscribe(p);
  readonly #onLost = (p: number) => this.#linger(p);

  constructor(
    private readonly nc: NatsConnection,
    private readonly ownership: Ownership,
    private readonly handle: (msg: ServiceMsg) => void,
    private readonly logger: Logger,
    private readonly lingerMs = LINGER_MS,
  ) {}

  /** Subscribes the partitions held now and follows acquisitions and losses; resolves once the server has them. */
  async start(): Promise<void> {
    // Only instances that can lose a partition linger, so only they listen for its next owner.
    if (this.ownership.fenced) {
      this.#owned = this.nc.subscribe(`${OWNED_SUBJECT_PREFIX}.*`, {
        callback: (err, m) => {
          if (err || m.string() === this.ownership.instanceId) return;
          const p = Number(m.subject.slice(OWNED_SUBJECT_PREFIX.length + 1));
          if (this.#lingering.has(p)) void this.#drain(p);
        },
      });
    }
    this.ownership.on("acquired", this.#onAcquired);
    this.ownership.on("lost", this.#onLost);
    for (const p of this.ownership.held()) this.#subscribe(p);
    await this.nc.flush();
  }

  /** The partitions subscribed now as their owner (lingering ones not counted). */
  get partitions(): number[] {
    return [...this.#subs.keys()].sort((a, b) => a - b);
  }

  /** The partitions lost here whose subscription lingers until their next owner serves them. */
  get lingering(): number[] {
    return [...this.#lingering.keys()].sort((a, b) => a - b);
  }

  /**
   * Stops following the ownership. Call it once the partitions are released: each subscription still held
   * lingers until its next owner has one (or {@link LINGER_MS}); resolves when all are drained.
   */
  async stop(): Promise<void> {
    this.ownership.off("acquired", this.#onAcquired);
    this.ownership.off("lost", this.#onLost);
    for (const p of [...this.#subs.keys()]) this.#linger(p);
    const lingering = [...this.#lingering.values()];
    // Alone (SQLite), nobody takes the partitions over: nothing to linger for.
    if (!this.ownership.fenced) for (const p of [...this.#lingering.keys()]) void this.#drain(p);
    await Promise.all(lingering.map((l) => l.drained));
    this.#owned?.unsubscribe();
  }

  #subscribe(p: number): void {
    const lingering = this.#lingering.get(p);
    if (lingering) {
      // Held again before its subscription went: it serves on.
      clearTimeout(lingering.timer);
      this.#lingering.delete(p);
      this.#subs.set(p, lingering.sub);
      lingering.done();
    }
    if (!this.#subs.has(p)) {
      this.#subs.set(p, this.nc.subscribe(`${PARTITION_SUBJECT_PREFIX}.${p}.>`, { queue: PARTITION_QUEUE, callback: (err, m) => (err ? this.logger.warn({ err, partition: p }, "partition subscription failed") : this.handle(serviceMsgOf(m))) }));
    }
    // Once the server has the subscription: requests find it, and the former owner may let go of its own.
    watch(
      this.logger,
      "partition subscription flush",
      this.nc.flush().then(() => {
        if (this.ownership.fenced && this.#subs.has(p) && !this.nc.isClosed()) this.nc.publish(`${OWNED_SUBJECT_PREFIX}.${p}`, this.ownership.instanceId);
      }),
    );
  }

  #linger(p: number): void {
    const sub = this.#subs.get(p);
    this.#subs.delete(p);
    if (!sub || this.#lingering.has(p)) return;
    const timer = setTimeout(() => void this.#drain(p), this.lingerMs);
    timer.unref();
    let done!: () => void;
    const drained = new Promise<void>((resolve) => (done = resolve));
    this.#lingering.set(p, { sub, timer, drained, done });
  }

  // Drained, not just unsubscribed: a request the server sent before it saw the UNSUB is still handled
  // (answered `unavailable`, so its caller retries at once) instead of dropped by the client, which would
  // cost its caller a whole timeout.
  async #drain(p: number): Promise<void> {
    const l = this.#lingering.get(p);
    if (!l) return;
    this.#lingering.delete(p);
    clearTimeout(l.timer);
    try {
      if (!l.sub.isClosed() && !this.nc.isClosed()) await l.sub.drain();
    } catch (err) {
      this.logger.warn({ err, partition: p }, "draining a partition subscription failed");
    } finally {
      l.done();
    }
  }
}
