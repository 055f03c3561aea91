/** Operator endpoints on the `nerve` service: consumer lag, replay with progress, dead letters. JSON in and out. */
import type { Service, ServiceMsg } from "@nats-io/services";
import { ContentTypes, NerveError, errors } from "../../contracts/index.js";
import { DEAD_LETTER_PAGE, type ConsumerManager } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import { watch } from "../supervision/index.js";
import { replyError, replyOk } from "./wire.js";
import { AdminSubjects, ConsumerOps, ConsumerOpSubjects } from "./admin-subjects.js";
import { adminBody, adminFailure, consumerName, wholeNumber } from "./admin-input.js";
import type { ConsumerAdmin } from "./consumer-admin.js";

export { AdminSubjects } from "./admin-subjects.js";
export { ConsumerAdmin, type ReplayState } from "./consumer-admin.js";

/**
 * Adds the admin endpoints to the service. Replay, its status and dead-letter retries go through
 * `consumerAdmin`: answered here when the consumer runs here, else by the instance that runs it.
 */
export function addAdminEndpoints(service: Service, consumers: ConsumerManager, consumerAdmin: ConsumerAdmin, logger: Logger): void {
  const json = ContentTypes.Json;
  const handle = (fn: (b: Record<string, unknown>) => Promise<unknown>) => (_err: Error | null, msg: ServiceMsg) => {
    watch(
      logger,
      "admin api",
      (async () => {
        try {
          replyOk(msg, json, { ok: true, result: await fn(adminBody(msg.data)) });
        } catch (err) {
          replyError(msg, json, adminFailure(err, logger));
        }
      })(),
    );
  };

  service.addEndpoint("admin-lag", { subject: AdminSubjects.Lag, handler: handle(() => consumers.lag()) });
  for (const op of Object.values(ConsumerOps)) {
    service.addEndpoint(`admin-${op}`, { subject: ConsumerOpSubjects[op], handler: handle((b) => consumerAdmin.request(op, b)) });
  }
  service.addEndpoint("admin-dead-letters", {
    subject: AdminSubjects.DeadLetters,
    // A page at a time (`after`, `limit`): all of them in one reply could pass NATS's max_payload.
    handler: handle(async (b) =>
      consumers.deadLetters.page({
        consumer: b.consumer === undefined ? undefined : consumerName(consumers, b),
        after: wholeNumber(b, "after", 0, Number.MAX_SAFE_INTEGER),
        limit: wholeNumber(b, "limit", 1, DEAD_LETTER_PAGE.maxLimit),
      }),
    ),
  });
}
