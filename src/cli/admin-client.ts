/** The operator's side of the admin endpoints. */
import type { NatsConnection } from "@nats-io/nats-core";
import { headers } from "@nats-io/nats-core";
import { errors as natsErrors } from "@nats-io/transport-node";

/** Sends one admin request (JSON) and returns its result; throws with the service's message. */
export async function adminRequest<T = unknown>(nc: NatsConnection, subject: string, body: unknown = {}): Promise<T> {
  const h = headers();
  h.set("Content-Type", "application/json");
  let msg;
  try {
    msg = await nc.request(subject, new TextEncoder().encode(JSON.stringify(body)), { timeout: 10_000, headers: h });
  } catch (err) {
    if (err instanceof natsErrors.NoRespondersError || (err as Error).cause instanceof natsErrors.NoRespondersError) {
      throw new Error("no Nerve service answers on this NATS: start it with `npm start` first");
    }
    throw err;
  }
  const reply = JSON.parse(new TextDecoder().decode(msg.data)) as { ok: boolean; result?: T; error?: { code: string; message: string } };
  if (!reply.ok) throw new Error(`${reply.error?.code}: ${reply.error?.message}`);
  return reply.result as T;
}
