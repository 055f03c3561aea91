/** The AccessRecord aggregate: one learner's access to one course, with progress and expiry (CONTRACT.md §2–§3). */
import { AccessId, deriveAccessId, domainEvent, errors, type DomainEvent, type QueryResult } from "../../contracts/index.js";
import type { Decider, RecordedEvent } from "../decider.js";
import { required } from "../facts.js";

/** An access record's status; a revoked or expired record may be granted again. */
export const AccessStatus = { Active: "active", Revoked: "revoked", Expired: "expired" } as const;
/** An access record's status. */
export type AccessStatus = (typeof AccessStatus)[keyof typeof AccessStatus];

/** An access record's state; progress and completion survive revocation, expiry and re-granting. */
export type AccessRecordState = {
  access_id: string;
  user_id: string;
  course_id: string;
  status: AccessStatus;
  progress: number;
  completed: boolean;
  expires_at: string | null;
  /**
   * The order whose payment granted the current grant, null when none did. Absent from snapshots
   * written before CourseAccessGranted version 2: read it through {@link orderOf}.
   */
  order_id?: string | null;
  /**
   * Every order whose payment granted the access since it was last granted afresh, oldest first (the
   * last is `order_id`): a learner may pay two orders naming one course (both placed before either was
   * paid), and a refund of the one the record names must leave the access the other paid for. State
   * only, not in the GetAccess view; absent when it would say no more than `order_id`: read it through
   * {@link payingOrders}.
   */
  paid_by?: string[];
};

/** An order as a grant naming it sees it: whose, which courses, and whether it is paid. */
export type PayingOrderFact = { user_id: string; course_ids: string[]; status: string };

/**
 * Facts the runtime supplies. GrantCourseAccess naming an `order_id` needs `order`, that order (null
 * when it does not exist): the record names an order as what paid for it, and a refund of it revokes
 * the access, so it must be a paid order of this user for this course. Nothing else needs any.
 */
export type AccessRecordFacts = { order?: PayingOrderFact | null };

type AccessCommand = "GrantCourseAccess" | "RevokeCourseAccess" | "UpdateProgress";
type AccessEvent = "CourseAccessGranted" | "AccessRevoked" | "AccessExpired" | "ProgressUpdated" | "CourseCompleted";

/** Whether `t` is at or before `now` (both contract timestamps). */
const reached = (t: string, now: string): boolean => Date.parse(t) <= Date.parse(now);

/**
 * An access id is derived, never chosen (CONTRACT.md §1): a command to any other id names no record that
 * could exist, a bad id (`invalid_request`), not a missing record.
 */
function notAccessId(id: string): void {
  if (!AccessId.safeParse(id).success) throw errors.invalidRequest(`${id} is not an access id (acc_ + 32 hex digits, derived from user and course)`, { access_id: id });
}

const ids = (s: AccessRecordState) => ({ access_id: s.access_id, user_id: s.user_id, course_id: s.course_id });

/**
 * Whether the record gives access at `now`: active, and its `expires_at` (if any) not reached. The expiry
 * timer may fire a little later than `expires_at` (a poll, a backlog of timers, a hand-off, downtime); a
 * record past it is over all the same — for learning (UpdateProgress) and for buying the course again.
 */
export const holdsAccess = (s: AccessRecordState | null, now: string): boolean =>
  s?.status === AccessStatus.Active && (s.expires_at === null || !reached(s.expires_at, now));

/** The record's paying order; null when none is known (also for a snapshot older than `order_id`). */
export const orderOf = (s: AccessRecordState | null): string | null => s?.order_id ?? null;

/** The most orders a record remembers as paying for it (the latest ones; see `paid_by`). */
export const MAX_PAYING_ORDERS = 50;

/** Every order that paid for the access since it was last granted afresh, oldest first (see `paid_by`). */
export const payingOrders = (s: AccessRecordState | null): string[] => s?.paid_by ?? (orderOf(s) === null ? [] : [orderOf(s)!]);

/** The AccessRecord decider; expiry is not a command but the timer operation {@link expire}. */
export const accessRecordDecider: Decider<AccessRecordState, AccessCommand, AccessEvent, AccessRecordFacts> = {
  aggregateType: "AccessRecord",
  commands: ["GrantCourseAccess", "RevokeCourseAccess", "UpdateProgress"],

  decide(command, state, facts) {
    const id = command.aggregate_id;
    switch (command.type) {
      case "GrantCourseAccess": {
        const { user_id, course_id } = command.body;
        // The id is derived, never chosen, so one (user, course) pair can only ever have one record.
        const derived = deriveAccessId(user_id, course_id);
        if (id !== derived) throw errors.invalidRequest(`access id must be ${derived} for this user and course`, { expected: derived });
        const expires_at = command.body.expires_at ?? null;
        const paying = command.body.order_id ?? null;
        if (paying !== null) {
          // Named as what paid for the access (a refund of it revokes the access): a made-up order, another
          // learner's, one without the course or not paid would leave access no payment stands behind.
          const order = required(facts.order, "order");
          if (order === null) throw errors.ruleViolated(`order ${paying} does not exist`, { order_id: paying });
          if (order.user_id !== user_id || !order.course_ids.includes(course_id)) {
            throw errors.ruleViolated(`order ${paying} did not buy ${course_id} for ${user_id}`, { order_id: paying });
          }
          if (order.status !== "paid") throw errors.ruleViolated(`order ${paying} is ${order.status}, not paid`, { order_id: paying, status: order.status });
        }
        // A business rule, not the body's shape: the same body is good a minute earlier (CONTRACT.md §3's codes).
        if (expires_at !== null && reached(expires_at, command.now)) {
          throw errors.ruleViolated("expires_at must be in the future", { expires_at, now: command.now });
        }
        // An active grant is re-issued to move its expiry, or to name another paying order (the same
        // course bought twice, both orders placed before either was paid; or, after a refund of the order
        // it names, another that paid for it): the record names that order and remembers the earlier
        // ones, so refunding one leaves what another paid for. Otherwise granting again changes nothing
        // (a repeated payment, a grant by hand).
        // Held at the command's time: a record past its expires_at, its timer not fired yet, is over, and
        // a grant now starts afresh (the orders that paid for the access that ended are not carried on).
        const active = holdsAccess(state, command.now);
        const named = command.body.order_id ?? null;
        if (active && state!.expires_at === expires_at && (named === null || named === orderOf(state))) return [];
        // Moving an active grant's expiry without naming an order keeps the order that paid for it.
        const order_id = command.body.order_id ?? (active ? orderOf(state) : null);
        return [domainEvent("CourseAccessGranted", { access_id: id, user_id, course_id, expires_at, order_id })];
      }
      case "RevokeCourseAccess": {
        notAccessId(id);
        if (!state) throw errors.notFound(`access ${id} does not exist`);
        if (state.status !== AccessStatus.Active) return [];
        return [domainEvent("AccessRevoked", { ...ids(state), reason: command.body.reason })];
      }
      case "UpdateProgress": {
        notAccessId(id);
        if (!state) throw errors.notFound(`access ${id} does not exist`);
        const { progress } = command.body;
        if (!Number.isInteger(progress) || progress < 0 || progress > 100) {
          throw errors.invalidRequest("progress must be an integer from 0 to 100", { progress });
        }
        if (state.status !== AccessStatus.Active) throw errors.ruleViolated(`access ${id} is ${state.status}`, { status: state.status });
        // The expiry timer may not have fired yet; the record is over all the same.
        if (state.expires_at !== null && reached(state.expires_at, command.now)) {
          throw errors.ruleViolated(`access ${id} expired at ${state.expires_at}`, { expires_at: state.expires_at });
        }
        if (progress <= state.progress) return [];
        const events: DomainEvent<AccessEvent>[] = [domainEvent("ProgressUpdated", { ...ids(state), progress })];
        if (progress === 100 && !state.completed) events.push(domainEvent("CourseCompleted", ids(state)));
        return events;
      }
    }
  },

  evolve(state, event: RecordedEvent<AccessEvent>) {
    switch (event.event_type) {
      case "CourseAccessGranted": {
        const p = event.payload;
        // The orders that paid for access still held when this grant came (not one past its expires_at
        // whose timer had not fired: that access was over, and what paid for it with it).
        const earlier = holdsAccess(state, event.occurred_on) ? payingOrders(state).filter((o) => o !== p.order_id) : [];
        // The latest MAX_PAYING_ORDERS only: refunded orders stay in the list until the access is granted afresh
        // (the record cannot tell them), so every paid-then-refunded order for the course grew every snapshot and
        // each later write of it for good (client-driven volume audit: 16 KB after 300). A learner does not pay
        // for one course fifty times at once; past that, a refund of the one named moves the access among these.
        const paid = (p.order_id === null ? earlier : [...earlier, p.order_id]).slice(-MAX_PAYING_ORDERS);
        return {
          access_id: p.access_id,
          user_id: p.user_id,
          course_id: p.course_id,
          status: AccessStatus.Active,
          progress: state?.progress ?? 0,
          completed: state?.completed ?? false,
          expires_at: p.expires_at,
          order_id: p.order_id,
          // Kept only when it says more than order_id: nearly every record was paid for once.
          ...(paid.length > 1 || (paid.length === 1 && paid[0] !== p.order_id) ? { paid_by: paid } : {}),
        };
      }
      case "AccessRevoked":
        return { ...state!, status: AccessStatus.Revoked };
      case "AccessExpired":
        return { ...state!, status: AccessStatus.Expired };
      case "ProgressUpdated":
        return { ...state!, progress: event.payload.progress };
      case "CourseCompleted":
        return { ...state!, completed: true };
    }
  },
};

/** The timer operation: an active record whose `expires_at` has come expires, as of its `expires_at`. */
export function expire(state: AccessRecordState | null, now: string): DomainEvent<"AccessExpired">[] {
  if (state?.status !== AccessStatus.Active || state.expires_at === null || !reached(state.expires_at, now)) return [];
  return [domainEvent("AccessExpired", { ...ids(state), expired_at: state.expires_at })];
}

/** When the runtime should next run {@link expire}: the `expires_at` of an active record, else null. */
export const nextDeadline = (state: AccessRecordState | null): string | null =>
  state?.status === AccessStatus.Active ? state.expires_at : null;

/** The GetAccess view of an access record. */
export const accessView = ({ paid_by: _paidBy, ...s }: AccessRecordState, version: number): QueryResult<"GetAccess"> => ({ ...s, order_id: orderOf(s), version });
