/** The shape of an aggregate's pure domain logic (after emmett's Decider): no I/O, no clock, no randomness. */
import type { AggregateType, Command, CommandType, DomainEvent, EventType } from "../contracts/index.js";

/**
 * An aggregate's decider. `state` is `null` until the aggregate exists. `decide` returns the events a
 * command causes (empty for a no-op) or throws a NerveError (`not_found`, `conflict`, `rule_violated`,
 * `invalid_request`). `facts` are what the runtime looked up outside the aggregate for this command
 * (another context's read model, say); the decider never fetches them itself.
 */
export interface Decider<S, C extends CommandType = CommandType, E extends EventType = EventType, F = Record<string, never>> {
  /** The aggregate type this decider owns. */
  readonly aggregateType: AggregateType;
  /** The command types it handles. */
  readonly commands: readonly C[];
  /** Decides what a command causes, given the current state and the facts it needs. */
  decide(command: Command<C>, state: S | null, facts: F): DomainEvent<E>[];
  /** Applies one event to the state. */
  evolve(state: S | null, event: DomainEvent<E>): S;
}

/** Folds events into a state, starting from nothing. */
export function fold<S, E extends EventType>(decider: Pick<Decider<S, CommandType, E, unknown>, "evolve">, events: DomainEvent<E>[], from: S | null = null): S | null {
  let state = from;
  for (const e of events) state = decider.evolve(state, e);
  return state;
}
