/** The operator's side of the service: one request, its reply decoded, NATS failures as clear CLI errors. */
import type { NatsConnection } from "@nats-io/nats-core";
import { headers } from "@nats-io/nats-core";
import { errors as natsErrors } from "@nats-io/transport-node";
import { ContentTypes, Headers, decode, encode, type ContentType } from "../../contracts/index.js";
import { CliError } from "./cli-error.js";

/** A reply of the contract: `{ ok: true, … }` or `{ ok: false, error }`. */
export type ServiceReply<T = Record<string, unknown>> = ({ ok: true } & T) | { ok: false; error: { code: string; message: string; details?: unknown } };

/** Options of {@link serviceRequest}. */
export interface ServiceRequestOptions {
  /** Encoding of the request (and so of the reply); JSON by default. */
  contentType?: ContentType;
  /** Extra request headers (Idempotency-Key, …). */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** Sends one request to the service and decodes its reply; no responder or no answer is a {@link CliError}. */
export async function serviceRequest<T = Record<string, unknown>>(nc: NatsConnection, subject: string, body: unknown, opts: ServiceRequestOptions = {}): Promise<ServiceReply<T>> {
  const ct = opts.contentType ?? ContentTypes.Json;
  const timeout = opts.timeoutMs ?? 10_000;
  const h = headers();
  h.set(Headers.ContentType, ct);
  for (const [k, v] of Object.entries(opts.headers ?? {})) h.set(k, v);
  let msg;
  try {
    msg = await nc.request(subject, encode(ct, body), { timeout, headers: h });
  } catch (err) {
    if (isCause(err, natsErrors.NoRespondersError)) throw new CliError(`no Nerve service answers ${subject} on this NATS: start it with \`npm start\` first`, undefined, { cause: err });
    if (isCause(err, natsErrors.TimeoutError)) throw new CliError(`no answer on ${subject} within ${timeout / 1000} s`, undefined, { cause: err });
    throw err;
  }
  const decoded = decode(msg.headers?.get(Headers.ContentType) === ContentTypes.MsgPack ? ContentTypes.MsgPack : ContentTypes.Json, msg.data);
  if (!decoded.ok) throw new CliError(`undecodable reply on ${subject}: ${decoded.error.message}`);
  return decoded.value as ServiceReply<T>;
}

/** Sends one admin request (JSON) and returns its result; an error reply is a {@link CliError} with its code and message. */
export async function adminRequest<T = unknown>(nc: NatsConnection, subject: string, body: unknown = {}): Promise<T> {
  const reply = await serviceRequest<{ result: T }>(nc, subject, body);
  if (!reply.ok) throw new CliError(`${reply.error.code}: ${reply.error.message}`);
  return reply.result;
}

function isCause(err: unknown, type: new (...args: never[]) => Error): boolean {
  return err instanceof type || (err as Error | undefined)?.cause instanceof type;
}

/** Whether `err` (a {@link CliError} of {@link serviceRequest}) says nothing answers the subject. */
export function isNoResponders(err: unknown): boolean {
  return isCause(err, natsErrors.NoRespondersError) || isCause((err as Error | undefined)?.cause, natsErrors.NoRespondersError);
}

/** Whether `err` (a {@link CliError} of {@link serviceRequest}) says no answer came in time. */
export function isTimedOut(err: unknown): boolean {
  return isCause(err, natsErrors.TimeoutError) || isCause((err as Error | undefined)?.cause, natsErrors.TimeoutError);
}
