/** What a durable timer does: its kind, and the name it goes by. */
import type { Context, DomainEvent } from "../../contracts/index.js";

/** What a timer kind does when due, and when it is next due given the new state. */
export interface TimerKind {
  readonly context: Context;
  readonly aggregateType: string;
  readonly kind: string;
  /** The operation run at the deadline. */
  fire(state: unknown, now: string): DomainEvent[];
  /** The next deadline of a state, or null for none. */
  deadline(state: unknown): string | null;
}

/** A kind's name in the log and on /metrics: its aggregate type and kind, `AccessRecord/expire`. */
export const timerKindName = (k: Pick<TimerKind, "aggregateType" | "kind">): string => `${k.aggregateType}/${k.kind}`;
