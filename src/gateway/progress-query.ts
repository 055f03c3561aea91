/**
 * The learner's access records from `query.access.GetLearnerProgress`, when some instance answers
 * it. Any failure (no responders, `unavailable` because no instance serves it yet, timeout, a reply
 * that is not the contract's) returns undefined and the welcome falls back to the records the
 * gateway derived from the stream; the query is then not asked again for a short back-off.
 */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { AccessView, ContentTypes, Headers, decode, encodeMsgPack, querySubject } from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { AccessRecordView } from "./event-log.js";

const Reply = z.object({ ok: z.literal(true), result: z.object({ items: z.array(AccessView) }) });
const SUBJECT = querySubject("access", "GetLearnerProgress");

/** Asks the service for a learner's access records. */
export class ProgressQuery {
  #backoffUntil = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    private readonly timeoutMs: number,
    private readonly backoffMs = 5_000,
  ) {}

  /** The learner's records, or undefined when the query is not answered. */
  async get(userId: string): Promise<AccessRecordView[] | undefined> {
    if (Date.now() < this.#backoffUntil) return undefined;
    const h = natsHeaders();
    h.set(Headers.ContentType, ContentTypes.MsgPack);
    try {
      const msg = await this.nc.request(SUBJECT, encodeMsgPack({ user_id: userId }), { timeout: this.timeoutMs, headers: h });
      const ct = msg.headers?.get(Headers.ContentType) === ContentTypes.Json ? ContentTypes.Json : ContentTypes.MsgPack;
      const decoded = decode(ct, msg.data);
      const parsed = decoded.ok ? Reply.safeParse(decoded.value) : undefined;
      if (parsed?.success) return parsed.data.result.items.filter((v) => v.user_id === userId);
      this.#backOff(decoded.ok ? JSON.stringify(decoded.value).slice(0, 200) : "undecodable reply");
    } catch (err) {
      this.#backOff((err as Error).message);
    }
    return undefined;
  }

  #backOff(why: string): void {
    if (Date.now() >= this.#backoffUntil) this.logger.debug({ why }, "GetLearnerProgress not answered: welcomes come from the stream");
    this.#backoffUntil = Date.now() + this.backoffMs;
  }
}
