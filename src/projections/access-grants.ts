/** `access-grants`: the process manager that turns paid and refunded orders into access (CONTRACT.md §4). */
import { Consumers, deriveAccessId, type EnvelopeBase } from "../../contracts/index.js";
import { holdsAccess, orderOf, payingOrders, type AccessRecordState } from "../../actors/access/access-record.js";
import type { OrderState } from "../../actors/orders/order.js";
import type { Subscriber } from "../consumers/index.js";
import type { Logger } from "../log/index.js";
import type { CommandBus } from "../runtime/index.js";
import { allOrFirstError, idempotencyKeyOf, issueCommand } from "./issue-command.js";
import { typedEvent } from "./typed-event.js";

/** The reason every refund-caused revocation carries. */
export const REFUND_REVOCATION_REASON = "order_refunded";

/**
 * OrderPaid → GrantCourseAccess (naming the order) per course; OrderRefunded → RevokeCourseAccess per course.
 *
 * Each acts only for what its order still stands for: a payment grants nothing once its order was
 * refunded (an OrderPaid retried from the dead letters after its refund), and a refund takes away only
 * access its own order granted. A learner may have paid two orders naming one course (both placed
 * before either was paid): the record names the latest and remembers the other (`paid_by`). A refund
 * of an order the record does not name leaves it; a refund of the one it names moves the access to
 * another order that paid for it and is still paid (a grant naming that order), and revokes it only
 * when there is none. A record that names no order (version 1, or granted by hand) is revoked, as
 * before `order_id` existed.
 */
export function accessGrants(deps: { bus: CommandBus; logger: Logger }): Subscriber {
  const logger = deps.logger.child({ consumer: Consumers.AccessGrants });
  // Keys derive from the source event, so a redelivery after a partial success repeats nothing.
  const trace = (e: EnvelopeBase, courseId: string) => ({
    idempotencyKey: idempotencyKeyOf(e.event_id, courseId),
    correlationId: e.correlation_id,
    causationId: e.event_id,
  });
  // The latest of `orders` that is still paid and names the course, or null.
  const stillPaying = async (orders: string[], courseId: string): Promise<string | null> => {
    for (const id of [...orders].reverse()) {
      const order = (await deps.bus.readState<OrderState>("Order", id)).state;
      if (order?.status === "paid" && order.course_ids.includes(courseId)) return id;
    }
    return null;
  };
  return {
    name: Consumers.AccessGrants,
    handles: { orders: ["OrderPaid", "OrderRefunded"] },
    // Every access record an order touches is its user's: one learner's orders in stream order (a refund
    // never overtakes its payment, a re-purchase never its refund), different learners side by side.
    orderKey: (e) => (e.payload as { user_id: string }).user_id,
    async react(raw) {
      const e = typedEvent(raw);
      if (e.event_type === "OrderPaid") {
        const { user_id, order_id } = e.payload;
        const order = (await deps.bus.readState<OrderState>("Order", order_id)).state;
        if (order !== null && order.status !== "paid") {
          logger.info({ order_id, status: order.status, event_id: e.event_id }, "order no longer paid: its payment grants nothing");
          return;
        }
        await allOrFirstError(
          e.payload.course_ids.map(async (course_id) => {
            const accessId = deriveAccessId(user_id, course_id);
            // Its payment already counted for this access (an OrderPaid retried from the dead letters): granting
            // again would name it over a later order and push the learner a grant for nothing.
            const record = (await deps.bus.readState<AccessRecordState>("AccessRecord", accessId)).state;
            if (holdsAccess(record, new Date().toISOString()) && payingOrders(record).includes(order_id)) return null;
            return issueCommand(deps.bus, logger, {
              context: "access",
              type: "GrantCourseAccess",
              aggregateId: accessId,
              body: { user_id, course_id, order_id },
              ...trace(e, course_id),
            });
          }),
        );
      } else if (e.event_type === "OrderRefunded") {
        const { user_id, order_id } = e.payload;
        await allOrFirstError(
          e.payload.course_ids.map(async (course_id) => {
            const accessId = deriveAccessId(user_id, course_id);
            const record = (await deps.bus.readState<AccessRecordState>("AccessRecord", accessId)).state;
            const granted = orderOf(record);
            if (granted !== null && granted !== order_id) {
              logger.info({ order_id, access_id: accessId, granted_by: granted, event_id: e.event_id }, "access granted by another order: the refund leaves it");
              return null;
            }
            // Moved only while it gives access: a record revoked by hand, or over by its expiry (its timer fired
            // or not), stays so — a refund never grants — and the move keeps its expiry.
            const holds = holdsAccess(record, new Date().toISOString());
            const other = granted === null || !holds ? null : await stillPaying(payingOrders(record).filter((o) => o !== order_id), course_id);
            if (other !== null) {
              logger.info({ order_id, access_id: accessId, now_paid_by: other, event_id: e.event_id }, "access also paid by another order: the refund moves it there");
              return issueCommand(deps.bus, logger, {
                context: "access",
                type: "GrantCourseAccess",
                aggregateId: accessId,
                body: { user_id, course_id, order_id: other, expires_at: record!.expires_at },
                ...trace(e, course_id),
              });
            }
            return issueCommand(deps.bus, logger, {
              context: "access",
              type: "RevokeCourseAccess",
              aggregateId: accessId,
              body: { reason: REFUND_REVOCATION_REASON },
              ...trace(e, course_id),
            });
          }),
        );
      }
    },
  };
}
