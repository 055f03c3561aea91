/**
 * Frames from clients. The only command is UpdateProgress, always for the token's own user: the
 * gateway derives the access id from (user, course) and requests `cmd.access.UpdateProgress.<id>`
 * on the command path, then answers an `ack` with the reply's outcome. Anything malformed — not
 * JSON, binary, too large, an unknown type, a schema violation — gets an `invalid_request` ack; the
 * socket stays open and nothing throws.
 */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { uuidv7 } from "../runtime/uuid7.js";
import { z } from "zod";
import {
  ClientFrame,
  CommandSuccess,
  ContentTypes,
  ErrorBody,
  Headers,
  PlainText,
  commandSubject,
  decode,
  deriveAccessId,
  encodeMsgPack,
  type ErrorCode,
} from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import type { Conn, Hub } from "./hub.js";
import type { GatewayMetrics } from "./metrics.js";

/** The error part of an ack. */
export type AckError = z.infer<typeof ErrorBody>;

const ErrorReplyShape = z.object({ ok: z.literal(false), error: ErrorBody });
/** A request_id an ack may echo: contract text of at most 128 characters, as UpdateProgress's. */
const RequestIdText = PlainText.max(128);

/** Limits of client commands. */
export interface ClientCommandOptions {
  /** Largest client frame handled (bytes); larger ones get an error ack. */
  maxFrameBytes: number;
  /** Commands one socket may have in flight; more are answered `unavailable`. */
  maxInflight: number;
  /** How long to wait for the command path (ms). */
  timeoutMs: number;
}

/** Handles client frames. */
export class ClientCommands {
  constructor(
    private readonly nc: NatsConnection,
    private readonly hub: Hub,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly opts: ClientCommandOptions,
  ) {}

  /** Handles one frame from a client; never throws. */
  handle(c: Conn, data: ArrayBuffer, isBinary: boolean): void {
    let requestId: string | null = null;
    try {
      if (isBinary) return this.#ack(c, null, invalid("frames must be JSON text"));
      if (data.byteLength > this.opts.maxFrameBytes) return this.#ack(c, null, invalid(`frames must be at most ${this.opts.maxFrameBytes} bytes`));
      let raw: unknown;
      try {
        raw = JSON.parse(Buffer.from(data).toString("utf8"));
      } catch {
        return this.#ack(c, null, invalid("frame is not JSON"));
      }
      const rid = (raw as { request_id?: unknown } | null)?.request_id;
      // Echoed only when it is one the contract allows (zod counts code points, so 128 emoji fit): a
      // NUL or a lone surrogate (JSON's "\ud800") in the ack would make it unreadable to a strict decoder.
      if (typeof rid === "string" && rid.length <= 256 && RequestIdText.safeParse(rid).success) requestId = rid;
      const parsed = ClientFrame.safeParse(raw);
      if (!parsed.success) {
        const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(frame)"} ${i.message}`);
        return this.#ack(c, requestId, invalid(`invalid frame: ${issues.join("; ")}`));
      }
      if (c.inflight >= this.opts.maxInflight) {
        return this.#ack(c, requestId, { code: "unavailable", message: `at most ${this.opts.maxInflight} commands in flight per connection` });
      }
      const frame = parsed.data;
      c.inflight++;
      void this.#run(c.userId, frame.course_id, frame.progress, frame.request_id)
        .then((error) => this.#ack(c, frame.request_id, error))
        .finally(() => c.inflight--);
    } catch (err) {
      this.logger.error({ err }, "client frame failed");
      this.#ack(c, requestId, { code: "internal", message: "client frame failed" });
    }
  }

  // Runs the command; resolves with the error of a failed one, undefined on success.
  async #run(userId: string, courseId: string, progress: number, requestId: string): Promise<AckError | undefined> {
    const h = natsHeaders();
    h.set(Headers.ContentType, ContentTypes.MsgPack);
    h.set(Headers.CorrelationId, uuidv7());
    try {
      const subject = commandSubject("access", "UpdateProgress", deriveAccessId(userId, courseId));
      const msg = await this.nc.request(subject, encodeMsgPack({ progress }), { timeout: this.opts.timeoutMs, headers: h });
      const ct = msg.headers?.get(Headers.ContentType) === ContentTypes.Json ? ContentTypes.Json : ContentTypes.MsgPack;
      const decoded = decode(ct, msg.data);
      if (decoded.ok && CommandSuccess.safeParse(decoded.value).success) return undefined;
      const failure = decoded.ok ? ErrorReplyShape.safeParse(decoded.value) : undefined;
      if (failure?.success) return failure.data.error;
      this.logger.error({ user_id: userId, request_id: requestId }, "command reply is not the contract's");
      return { code: "internal", message: "unexpected reply from the command path" };
    } catch (err) {
      const message = /no responders|503/i.test(String((err as Error).message)) ? "the command path is not available" : "the command path did not answer in time";
      return { code: "unavailable", message };
    }
  }

  #ack(c: Conn, requestId: string | null, error: AckError | undefined): void {
    this.metrics.commands.inc({ result: error?.code ?? "ok" });
    this.hub.reply(c, JSON.stringify(error ? { type: "ack", request_id: requestId, ok: false, error } : { type: "ack", request_id: requestId, ok: true }));
  }
}

function invalid(message: string): AckError {
  return { code: "invalid_request" satisfies ErrorCode, message };
}
