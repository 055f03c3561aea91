/** The shape of an aggregate's pure domain logic (after emmett's Decider): no I/O, no clock, no randomness. */
import type { AggregateType, Command, CommandType, DomainEvent, EventType } from "../contracts/index.js";

/**
 * An event as `evolve` sees it: the decided event plus the envelope's `occurred_on`. State that depends
 * on when something happened (an order's `paid_at`) can only come from here, because payloads are the
 * wire contract and carry no such field. A stored `EventEnvelope` fits this type as it is.
 */
export type RecordedEvent<E extends EventType = EventType> = DomainEvent<E> & { occurred_on: string };

/**
 * An aggregate's decider. `state` is `null` until the aggregate exists. `decide` returns the events a
 * command causes (empty for a no-op) or throws a NerveError (`not_found`, `conflict`, `rule_violated`,
 * `invalid_request`; `internal` when the runtime failed to supply a fact the command needs). `facts`
 * are what the runtime looked up outside the aggregate for this command (another context's read
 * model, say); the decider never fetches them itself.
 */
export interface Decider<S, C extends CommandType = CommandType, E extends EventType = EventType, F = Record<string, never>> {
  /** The aggregate type this decider owns. */
  readonly aggregateType: AggregateType;
  /** The command types it handles. */
  readonly commands: readonly C[];
  /** Decides what a command causes, given the current state and the facts it needs. */
  decide(command: Command<C>, state: S | null, facts: F): DomainEvent<E>[];
  /** Applies one recorded event to the state. */
  evolve(state: S | null, event: RecordedEvent<E>): S;
}

/** Stamps freshly decided events with the time they happened (the command's `now`), ready for `evolve`. */
export function recordAt<E extends EventType>(events: DomainEvent<E>[], occurred_on: string): RecordedEvent<E>[] {
  return events.map((e) => ({ ...e, occurred_on }) as RecordedEvent<E>);
}

/** Folds events into a state, starting from nothing. */
export function fold<S, E extends EventType>(decider: Pick<Decider<S, CommandType, E, unknown>, "evolve">, events: RecordedEvent<E>[], from: S | null = null): S | null {
  let state = from;
  for (const e of events) state = decider.evolve(state, e);
  return state;
}
