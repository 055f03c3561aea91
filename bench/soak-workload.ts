/**
 * The soak's aggregates and its mix: users (seeded as snapshots), one access record per user
 * (granted through the command path), a small catalog, and orders placed and paid during the run
 * (their payment drives `access-grants`, which grants new access records).
 */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { decodeMsgPack, deriveAccessId, encodeMsgPack } from "../contracts/index.js";
import { runWindowed } from "./window.js";

/** The requests of the mix and their share of every 100, in the order they are drawn. */
export const SOAK_MIX = [
  ["UpdateProgress", 50],
  ["UpdateUserProfile", 20],
  ["PlaceOrder", 8],
  ["MarkOrderPaid", 8],
  ["GetAccess", 6],
  ["GetUser", 6],
  // Read models' queries run on the query thread (SqliteQueryThread): soaked beside the rest since stop 40.
  ["SearchCatalog", 1],
  ["GetLearnerProgress", 1],
] as const;

/** A kind of request of the mix. */
export type SoakKind = (typeof SOAK_MIX)[number][0];

/** One request to send. */
export interface SoakRequest {
  kind: SoakKind;
  subject: string;
  body: unknown;
  /** The order a PlaceOrder creates. */
  orderId?: string;
}

/** A decoded reply: the contract's `{ ok, … }` body, or a transport failure. */
export interface SoakReply {
  ok: boolean;
  code?: string;
  message?: string;
  events?: Array<{ event_id: string }>;
}

const COURSES = 20;
const POLICY = "soak-policy";
// One draw per hundred slots, spread (37 is prime to 100) so the kinds interleave.
const KIND_OF_SLOT: SoakKind[] = SOAK_MIX.flatMap(([k, n]) => Array<SoakKind>(n).fill(k));

const msgpack = natsHeaders();
msgpack.set("Content-Type", "application/msgpack");

/** Sends one MessagePack request and decodes the contract's reply; a timeout or no responder is `transport`. */
export async function call(nc: NatsConnection, subject: string, body: unknown, timeoutMs = 30_000): Promise<SoakReply> {
  let data: Uint8Array;
  try {
    data = (await nc.request(subject, encodeMsgPack(body), { timeout: timeoutMs, headers: msgpack })).data;
  } catch {
    return { ok: false, code: "transport" };
  }
  const d = decodeMsgPack(data);
  const r = d.ok ? (d.value as { ok?: boolean; events?: Array<{ event_id: string }>; error?: { code?: string; message?: string } }) : undefined;
  return r?.ok === true ? { ok: true, events: r.events ?? [] } : { ok: false, code: r?.error?.code ?? "undecodable", message: r?.error?.message ?? "" };
}

/** {@link call}, retried up to five times while the answer is `unavailable` or no answer came (the contract's "safe to retry"). */
export async function callRetrying(nc: NatsConnection, subject: string, body: unknown): Promise<SoakReply> {
  for (let attempt = 1; ; attempt++) {
    const r = await call(nc, subject, body);
    if (r.ok || attempt === 5 || (r.code !== "unavailable" && r.code !== "transport")) return r;
    await new Promise((res) => setTimeout(res, 200 * attempt));
  }
}

/** The aggregates of a soak and the state the mix needs to keep every command meaningful. */
export class SoakWorkload {
  readonly users: string[];
  readonly courses: string[];
  /** Access record i belongs to user i and course i mod 20. */
  readonly accessIds: string[];
  readonly #progress: Uint8Array;
  readonly #ordersOf: Uint8Array;
  readonly #unpaid: string[] = [];
  #unpaidHead = 0;
  #orders = 0;
  readonly #cursor = { progress: 0, profile: 0, order: 0, query: 0 };

  constructor(users: number) {
    this.users = Array.from({ length: users }, (_, i) => `soak-u${String(i).padStart(6, "0")}`);
    this.courses = Array.from({ length: COURSES }, (_, i) => `soak-c${String(i).padStart(2, "0")}`);
    this.accessIds = this.users.map((u, i) => deriveAccessId(u, this.courses[i % COURSES]!));
    this.#progress = new Uint8Array(users);
    this.#ordersOf = new Uint8Array(users);
  }

  /** The i-th request of the mix. */
  next(i: number): SoakRequest {
    const kind = KIND_OF_SLOT[(i * 37) % 100]!;
    const n = this.users.length;
    switch (kind) {
      case "UpdateProgress": {
        // Every 50th record (not a learner's) moves in steps of 10 and completes (certificates); the others by 1.
        for (let tries = 0; tries < n; tries++) {
          const a = this.#cursor.progress++ % n;
          if (this.#progress[a]! >= 100) continue;
          const p = Math.min(100, this.#progress[a]! + (a % 50 === 25 ? 10 : 1));
          this.#progress[a] = p;
          return { kind, subject: `cmd.access.UpdateProgress.${this.accessIds[a]}`, body: { progress: p } };
        }
        return this.next(i + 1);
      }
      case "UpdateUserProfile": {
        const u = this.#cursor.profile++;
        return { kind, subject: `cmd.users.UpdateUserProfile.${this.users[u % n]}`, body: { profile_data: { bio: `soak bio #${u}` } } };
      }
      case "PlaceOrder": {
        // A user buys, one at a time, each of the 19 courses it was not granted at the start.
        for (let tries = 0; tries < n; tries++) {
          const u = this.#cursor.order++ % n;
          const k = this.#ordersOf[u]!;
          if (k >= COURSES - 1) continue;
          this.#ordersOf[u] = k + 1;
          const orderId = `soak-o${this.#orders++}`;
          return { kind, subject: `cmd.orders.PlaceOrder.${orderId}`, body: { user_id: this.users[u], course_ids: [this.courses[(u + 1 + k) % COURSES]] }, orderId };
        }
        return this.next(i + 1);
      }
      case "MarkOrderPaid": {
        const orderId = this.#unpaid[this.#unpaidHead];
        if (orderId === undefined) return this.next(i + 1);
        this.#unpaidHead++;
        if (this.#unpaidHead >= 4096) {
          this.#unpaid.splice(0, this.#unpaidHead);
          this.#unpaidHead = 0;
        }
        return { kind, subject: `cmd.orders.MarkOrderPaid.${orderId}`, body: { payment_id: `pay-${orderId}` } };
      }
      case "GetAccess":
        return { kind, subject: "query.access.GetAccess", body: { access_id: this.accessIds[this.#cursor.query++ % n] } };
      case "GetUser":
        return { kind, subject: "query.users.GetUser", body: { user_id: this.users[this.#cursor.query++ % n] } };
      case "SearchCatalog": {
        // Every course's title matches "soak"; "course 7" and the like match a few.
        const q = this.#cursor.query++;
        return { kind, subject: "query.courses.SearchCatalog", body: { text: q % 2 === 0 ? "soak" : `course ${q % COURSES}`, limit: 10 } };
      }
      case "GetLearnerProgress":
        return { kind, subject: "query.access.GetLearnerProgress", body: { user_id: this.users[this.#cursor.query++ % n] } };
    }
  }

  /** The `count` users that connect as WebSocket learners, spread evenly over the users so that the round robin reaches one of them every so often. */
  learners(count: number): string[] {
    const step = Math.max(1, Math.floor(this.users.length / count));
    return Array.from({ length: count }, (_, k) => this.users[k * step]!);
  }

  /** Learns from a reply: a placed order is paid later in the mix. */
  replied(req: SoakRequest, reply: SoakReply): void {
    if (req.orderId && reply.ok) this.#unpaid.push(req.orderId);
  }

  /** Creates the refund policy and the 20 courses (each for sale) through the command path. */
  async createCatalog(nc: NatsConnection, onAck: (reply: SoakReply) => void): Promise<void> {
    const must = async (subject: string, body: unknown) => {
      const r = await callRetrying(nc, subject, body);
      if (!r.ok) throw new Error(`${subject} failed: ${r.code} ${r.message ?? ""}`);
      onAck(r);
    };
    await must(`cmd.policies.CreatePolicy.${POLICY}`, { name: "Soak standard", type: "standard", refund_period_days: 14 });
    for (const [i, c] of this.courses.entries()) {
      await must(`cmd.courses.CreateCourse.${c}`, { title: `Soak course ${i}`, instructor_id: "soak-instructor", policy_id: POLICY, price: { amount: 1900 + i * 100, currency: "EUR" } });
    }
  }

  /** Grants every user its first course through the command path, `inflight` at a time; throws on the first refusal. */
  grantAll(nc: NatsConnection, inflight: number, onAck: (reply: SoakReply) => void, onProgress: (done: number) => void): Promise<number> {
    return this.#eachUser(nc, inflight, onAck, onProgress, (i) => [`cmd.access.GrantCourseAccess.${this.accessIds[i]}`, { user_id: this.users[i], course_id: this.courses[i % COURSES], expires_at: null }]);
  }

  /** Updates every user's profile once, so that every user is a live actor before anything is measured. */
  touchUsers(nc: NatsConnection, inflight: number, onAck: (reply: SoakReply) => void, onProgress: (done: number) => void): Promise<number> {
    return this.#eachUser(nc, inflight, onAck, onProgress, (i) => [`cmd.users.UpdateUserProfile.${this.users[i]}`, { profile_data: { locale: "en-US" } }]);
  }

  // One command per user, `inflight` at a time; resolves with the seconds it took.
  async #eachUser(nc: NatsConnection, inflight: number, onAck: (reply: SoakReply) => void, onProgress: (done: number) => void, command: (i: number) => [string, unknown]): Promise<number> {
    const started = performance.now();
    let done = 0;
    await runWindowed(this.users.length, inflight, async (i) => {
      const [subject, body] = command(i);
      const r = await callRetrying(nc, subject, body);
      if (!r.ok) throw new Error(`${subject} failed: ${r.code} ${r.message ?? ""}`);
      onAck(r);
      if (++done % 5000 === 0) onProgress(done);
    });
    return (performance.now() - started) / 1000;
  }
}
