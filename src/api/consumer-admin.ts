/**
 * The admin requests about one durable consumer — replay, replay-status, retry-dead-letter — run where
 * the consumer runs. With several instances the service's endpoints share a queue group, so a request
 * may reach any of them: one that does not hold the consumer's lease forwards it to the holder's own
 * subject ({@link instanceAdminSubject}, a plain subscription of that instance alone) and relays the
 * answer. An instance's own subject never forwards, so a request crosses at most one hop.
 */
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { z } from "zod";
import { ContentTypes, ErrorBody, Headers, NerveError, decodeJson, encodeJson, errorReply, errors } from "../../contracts/index.js";
import type { ConsumerManager, ReplayProgress } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import { watch } from "../supervision/index.js";
import { ConsumerOpSubjects, ConsumerOps, instanceAdminPrefix, instanceAdminSubject, type ConsumerOp } from "./admin-subjects.js";
import { adminBody, adminFailure, consumerName, wholeNumber } from "./admin-input.js";
import { replyHeaders } from "./wire.js";

/** A replay's state as the CLI polls it: `instance` is where it runs (or ran). */
export type ReplayState = ReplayProgress & { running: boolean; error?: string; instance: string };

/** How long a forwarded request may take: below the CLI's 10 s, so the caller hears why it failed. */
export const FORWARD_TIMEOUT_MS = 8000;

const Reply = z.union([z.object({ ok: z.literal(true), result: z.unknown() }), z.object({ ok: z.literal(false), error: ErrorBody })]);

/** What answers the consumer admin requests on this instance. */
export interface ConsumerAdminOptions {
  nc: NatsConnection;
  consumers: ConsumerManager;
  instanceId: string;
  logger: Logger;
  forwardTimeoutMs?: number;
}

/** Replays and dead-letter retries of this instance's consumers, and the forwarding of the others'. */
export class ConsumerAdmin {
  /** The replays run here, by consumer: the last one of each stays, finished or failed, for its status. */
  readonly #replays = new Map<string, ReplayState>();
  readonly #o: ConsumerAdminOptions;

  constructor(opts: ConsumerAdminOptions) {
    this.#o = opts;
  }

  /** Answers `op` as the `nerve` service (whichever instance took it): here if the consumer runs here, else by its holder. */
  async request(op: ConsumerOp, b: Record<string, unknown>): Promise<unknown> {
    const { consumers } = this.#o;
    switch (op) {
      case ConsumerOps.Replay: {
        const name = consumerName(consumers, b);
        return consumers.runsHere(name) ? this.#replay(name) : this.#forward(await this.#holder(name), op, { consumer: name });
      }
      case ConsumerOps.ReplayStatus: {
        const name = consumerName(consumers, b);
        const here = this.#replays.get(name);
        // A replay still running here answers for itself, even if the lease has just moved on.
        if (consumers.runsHere(name) || here?.running) return this.#status(name);
        const holder = await consumers.holderOf(name);
        if (holder === undefined && here) return here;
        return this.#forward(await this.#holder(name, holder), op, { consumer: name });
      }
      case ConsumerOps.RetryDeadLetter: {
        const id = this.#letter(b);
        const name = await consumers.deadLetters.consumerOf(id);
        if (name === undefined) throw errors.notFound(`no dead letter ${id}`);
        // A letter of a consumer this service does not have is refused here, saying so.
        if (!consumers.handlers.has(name) || consumers.runsHere(name)) return this.#retry(id);
        return this.#forward(await this.#holder(name), op, { id });
      }
    }
  }

  /** Answers `op` on this instance's own subject: for this instance alone, never forwarded. */
  async local(op: ConsumerOp, b: Record<string, unknown>): Promise<unknown> {
    const { consumers } = this.#o;
    switch (op) {
      case ConsumerOps.Replay: {
        const name = consumerName(consumers, b);
        await this.#mustRunHere(name, op);
        return this.#replay(name);
      }
      case ConsumerOps.ReplayStatus:
        return this.#status(consumerName(consumers, b));
      case ConsumerOps.RetryDeadLetter: {
        const id = this.#letter(b);
        const name = await consumers.deadLetters.consumerOf(id);
        if (name !== undefined && consumers.handlers.has(name)) await this.#mustRunHere(name, op);
        return this.#retry(id);
      }
    }
  }

  /** Serves this instance's own subjects ({@link local}) until the subscription is unsubscribed. */
  serve(): Subscription {
    const { nc, instanceId, logger } = this.#o;
    const ops = new Map<string, ConsumerOp>(Object.values(ConsumerOps).map((op) => [instanceAdminSubject(instanceId, op), op]));
    return nc.subscribe(`${instanceAdminPrefix(instanceId)}.*`, {
      callback: (_err, msg) => {
        if (!msg.reply) return;
        const op = ops.get(msg.subject);
        watch(
          logger,
          "instance admin",
          (async () => {
            try {
              if (!op) throw errors.notFound(`${msg.subject} is none of ${Object.values(ConsumerOps).join(", ")}`);
              this.#respond(msg, { ok: true, result: await this.local(op, adminBody(msg.data)) });
            } catch (err) {
              this.#respond(msg, errorReply(adminFailure(err, logger)));
            }
          })(),
        );
      },
    });
  }

  #respond(msg: Msg, body: unknown): void {
    msg.respond(encodeJson(body), { headers: replyHeaders(ContentTypes.Json, this.#o.instanceId) });
  }

  // Starts a replay here and answers its first state; it goes on in the background, polled by its status.
  #replay(name: string): ReplayState {
    const { consumers, logger, instanceId } = this.#o;
    if (this.#replays.get(name)?.running) throw errors.conflict(`a replay of ${name} is already running on instance ${instanceId}`);
    const state: ReplayState = { consumer: name, done: 0, total: 0, running: true, instance: instanceId };
    this.#replays.set(name, state);
    consumers
      .replay(name, (p) => Object.assign(state, p))
      .then(() => (state.running = false))
      .catch((err) => {
        Object.assign(state, { running: false, error: String((err as Error)?.message ?? err) });
        logger.error({ err, consumer: name }, "replay failed");
      });
    return state;
  }

  // The state of the last replay of `name` run here; none is `not_found`, saying where the consumer runs.
  async #status(name: string): Promise<ReplayState> {
    const state = this.#replays.get(name);
    if (state) return state;
    const me = this.#o.instanceId;
    const where = this.#o.consumers.runsHere(name) ? "" : `; ${await this.#whereRuns(name)}`;
    throw errors.notFound(`no replay of ${name} has run on instance ${me}${where}`);
  }

  // A stale retry changed nothing and kept the letter: the reply says so, and what restores the event.
  async #retry(id: number): Promise<{ outcome: string; message?: string }> {
    const { consumers } = this.#o;
    const outcome = await consumers.deadLetters.retry(id, consumers.handlers);
    if (outcome !== "stale") return { outcome };
    return { outcome, message: staleRetryMessage(id, (await consumers.deadLetters.consumerOf(id)) ?? "its consumer") };
  }

  // The dead letter's id: required, a positive whole number.
  #letter(b: Record<string, unknown>): number {
    const id = wholeNumber(b, "id", 1, Number.MAX_SAFE_INTEGER);
    if (id === undefined) throw errors.invalidRequest("id must be a whole number from 1 up: the dead letter's id (see dead-letters)");
    return id;
  }

  // This instance's own subject takes only what runs here: the service's subject forwards the rest.
  async #mustRunHere(name: string, op: ConsumerOp): Promise<void> {
    if (this.#o.consumers.runsHere(name)) return;
    throw errors.unavailable(`${await this.#whereRuns(name)}, not on this instance (${this.#o.instanceId}): send ${op} to ${ConsumerOpSubjects[op]}, which any instance forwards to the consumer's`);
  }

  async #whereRuns(name: string): Promise<string> {
    const holder = await this.#o.consumers.holderOf(name);
    return holder === undefined ? `no instance runs ${name} now` : `${name} runs on instance ${holder}`;
  }

  // The instance to forward to: the lease's live holder, never this one (its lease being handed off or lapsed here).
  async #holder(name: string, known?: string): Promise<string> {
    const holder = known ?? (await this.#o.consumers.holderOf(name));
    if (holder === undefined) throw errors.unavailable(`no instance runs ${name} now (its lease is free or lapsed): retry once an instance with the consumers role has taken it`);
    if (holder === this.#o.instanceId) throw errors.unavailable(`${name} is being handed off from this instance (${holder}): retry in a moment`);
    return holder;
  }

  // Sends the request to the holder's own subject and answers what it answered.
  async #forward(holder: string, op: ConsumerOp, body: Record<string, unknown>): Promise<unknown> {
    const h = natsHeaders();
    h.set(Headers.ContentType, ContentTypes.Json);
    const timeout = this.#o.forwardTimeoutMs ?? FORWARD_TIMEOUT_MS;
    let msg: Msg;
    try {
      msg = await this.#o.nc.request(instanceAdminSubject(holder, op), encodeJson(body), { timeout, headers: h });
    } catch (err) {
      throw errors.unavailable(`${op} runs on instance ${holder}, which did not answer (${(err as Error).message}): retry`);
    }
    const decoded = decodeJson(msg.data);
    const reply = decoded.ok ? Reply.safeParse(decoded.value) : undefined;
    if (!reply?.success) throw errors.internal(`instance ${holder} answered ${op} with something that is not an admin reply`);
    if (reply.data.ok) return reply.data.result;
    const e = reply.data.error;
    throw new NerveError(e.code, e.message, e.details === undefined ? undefined : { details: e.details as Record<string, unknown> });
  }
}

// What an operator is told of a `stale` retry of dead letter `id` of `consumer`.
function staleRetryMessage(id: number, consumer: string): string {
  return (
    `dead letter ${id} stays: the retry applied nothing, as ${consumer}'s read model can no longer take its event (the row it changes ` +
    `is absent, or later events moved it past the event and it cannot tell what they replaced). Should an earlier letter of the same ` +
    `aggregate be parked (its creation), retry that one first; otherwise only a replay restores the event: npm run nerve -- replay ` +
    `${consumer}. Retried after the replay, this letter is a duplicate and leaves the store.`
  );
}
