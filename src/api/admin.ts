/** Operator endpoints on the `nerve` service: consumer lag, replay with progress, dead letters. JSON in and out. */
import type { Service, ServiceMsg } from "@nats-io/services";
import { ContentTypes, NerveError, errors } from "../../contracts/index.js";
import { DEAD_LETTER_PAGE, type ConsumerManager, type ReplayProgress } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import { watch } from "../supervision/index.js";
import { replyError, replyOk } from "./wire.js";
import { AdminSubjects } from "./admin-subjects.js";

export { AdminSubjects } from "./admin-subjects.js";

/** A replay's state as the CLI polls it. */
export type ReplayState = ReplayProgress & { running: boolean; error?: string };

/** Adds the admin endpoints to the service. */
export function addAdminEndpoints(service: Service, consumers: ConsumerManager, logger: Logger): void {
  const replays = new Map<string, ReplayState>();
  const json = ContentTypes.Json;
  const body = (msg: ServiceMsg): Record<string, unknown> => {
    if (msg.data.length === 0) return {};
    try {
      return JSON.parse(new TextDecoder().decode(msg.data)) as Record<string, unknown>;
    } catch {
      throw errors.invalidRequest("admin requests are JSON");
    }
  };
  const handle = (fn: (b: Record<string, unknown>) => Promise<unknown>) => (_err: Error | null, msg: ServiceMsg) => {
    watch(
      logger,
      "admin api",
      (async () => {
        try {
          replyOk(msg, json, { ok: true, result: await fn(body(msg)) });
        } catch (err) {
          replyError(msg, json, err instanceof NerveError ? err : errors.invalidRequest(String((err as Error)?.message ?? err)));
        }
      })(),
    );
  };
  const consumerName = (b: Record<string, unknown>): string => {
    const name = String(b.consumer ?? "");
    if (!consumers.runners.has(name)) throw errors.notFound(`no consumer ${name}; known: ${[...consumers.runners.keys()].join(", ")}`);
    return name;
  };

  // An optional whole number of the request within [min, max]; anything else is refused, saying so.
  const wholeNumber = (b: Record<string, unknown>, key: string, min: number, max: number): number | undefined => {
    const v = b[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw errors.invalidRequest(`${key} must be a whole number from ${min} to ${max}, not ${JSON.stringify(v)}`);
    return v;
  };

  service.addEndpoint("admin-lag", { subject: AdminSubjects.Lag, handler: handle(() => consumers.lag()) });
  service.addEndpoint("admin-replay", {
    subject: AdminSubjects.Replay,
    handler: handle(async (b) => {
      const name = consumerName(b);
      if (replays.get(name)?.running) throw errors.conflict(`a replay of ${name} is already running`);
      const state: ReplayState = { consumer: name, done: 0, total: 0, running: true };
      replays.set(name, state);
      consumers
        .replay(name, (p) => Object.assign(state, p))
        .then(() => (state.running = false))
        .catch((err) => {
          Object.assign(state, { running: false, error: String((err as Error)?.message ?? err) });
          logger.error({ err, consumer: name }, "replay failed");
        });
      return state;
    }),
  });
  service.addEndpoint("admin-replay-status", {
    subject: AdminSubjects.ReplayStatus,
    handler: handle(async (b) => replays.get(consumerName(b)) ?? { consumer: b.consumer, running: false, done: 0, total: 0 }),
  });
  service.addEndpoint("admin-dead-letters", {
    subject: AdminSubjects.DeadLetters,
    // A page at a time (`after`, `limit`): all of them in one reply could pass NATS's max_payload.
    handler: handle(async (b) =>
      consumers.deadLetters.page({
        consumer: b.consumer === undefined ? undefined : consumerName(b),
        after: wholeNumber(b, "after", 0, Number.MAX_SAFE_INTEGER),
        limit: wholeNumber(b, "limit", 1, DEAD_LETTER_PAGE.maxLimit),
      }),
    ),
  });
  service.addEndpoint("admin-retry-dead-letter", {
    subject: AdminSubjects.RetryDeadLetter,
    handler: handle(async (b) => ({ outcome: await consumers.deadLetters.retry(Number(b.id), consumers.handlers) })),
  });
}
