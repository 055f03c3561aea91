/**
 * The learner's access records from `query.access.GetLearnerProgress`, when some instance answers
 * it. Any failure returns undefined and the welcome falls back to the records the gateway derived
 * from the stream; the query is then not asked again for a short back-off — of every learner when
 * nothing can answer (no responders, the connection closed, draining or cut, several timeouts in a
 * row, or an `unavailable` reply: the service's, never one learner's), else only of the learner whose
 * query failed (another error reply, a reply that is not the contract's, a timeout): one learner's failing query leaves the others' welcomes whole.
 * Welcomes of one learner that ask at the same time (sockets opened together) share one request.
 */
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { AccessView, ContentTypes, Headers, decode, encodeMsgPack, querySubject } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { AccessRecordView } from "./event-log.js";

const Reply = z.object({ ok: z.literal(true), result: z.object({ items: z.array(AccessView) }) });
const SUBJECT = querySubject("access", "GetLearnerProgress");
/** Timeouts in a row (no reply between them) that say the query side is down, not one learner's query slow. */
const TIMEOUTS_IN_A_ROW = 3;

/** Asks the service for a learner's access records. */
export class ProgressQuery {
  #backoffUntil = 0;
  #timeouts = 0;
  /** Learners whose query failed, with when they may be asked again; in that order (one back-off for all). */
  readonly #userBackoff = new Map<string, number>();
  readonly #inflight = new Map<string, Promise<AccessRecordView[] | undefined>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    private readonly timeoutMs: number,
    private readonly backoffMs = 5_000,
  ) {}

  /** The learner's records, or undefined when the query is not answered. */
  get(userId: string): Promise<AccessRecordView[] | undefined> {
    const now = Date.now();
    if (now < this.#backoffUntil) return Promise.resolve(undefined);
    for (const [user, until] of this.#userBackoff) {
      if (until > now) break;
      this.#userBackoff.delete(user);
    }
    if (this.#userBackoff.has(userId)) return Promise.resolve(undefined);
    let asked = this.#inflight.get(userId);
    if (!asked) {
      asked = this.#ask(userId).finally(() => this.#inflight.delete(userId));
      this.#inflight.set(userId, asked);
    }
    return asked;
  }

  async #ask(userId: string): Promise<AccessRecordView[] | undefined> {
    const h = natsHeaders();
    h.set(Headers.ContentType, ContentTypes.MsgPack);
    let msg: Msg;
    try {
      msg = await this.nc.request(SUBJECT, encodeMsgPack({ user_id: userId }), { timeout: this.timeoutMs, headers: h });
    } catch (err) {
      const why = (err as Error).message;
      if ((err as Error).name !== "TimeoutError" || ++this.#timeouts >= TIMEOUTS_IN_A_ROW) this.#backOffAll(why);
      else this.#backOffUser(userId, why);
      return undefined;
    }
    this.#timeouts = 0;
    const ct = msg.headers?.get(Headers.ContentType) === ContentTypes.Json ? ContentTypes.Json : ContentTypes.MsgPack;
    const decoded = decode(ct, msg.data);
    const parsed = decoded.ok ? Reply.safeParse(decoded.value) : undefined;
    if (parsed?.success) return parsed.data.result.items.filter((v) => v.user_id === userId);
    const why = decoded.ok ? JSON.stringify(decoded.value).slice(0, 200) : "undecodable reply";
    // `unavailable` is the service's (queries waiting, stopping, storage), never one learner's: everyone
    // rests from it, or a reconnect storm's welcomes would keep the query side full.
    if (decoded.ok && (decoded.value as { error?: { code?: unknown } } | null)?.error?.code === "unavailable") this.#backOffAll(why);
    else this.#backOffUser(userId, why);
    return undefined;
  }

  #backOffAll(why: string): void {
    if (Date.now() >= this.#backoffUntil) this.logger.debug({ why }, "GetLearnerProgress not answered: welcomes come from the stream");
    this.#backoffUntil = Date.now() + this.backoffMs;
  }

  #backOffUser(userId: string, why: string): void {
    this.logger.debug({ why, user_id: userId }, "GetLearnerProgress failed for a learner: their welcome comes from the stream");
    this.#userBackoff.delete(userId); // re-inserted last: the map stays in the order of its times
    this.#userBackoff.set(userId, Date.now() + this.backoffMs);
  }
}
