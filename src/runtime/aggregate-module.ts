/** How the runtime hosts one aggregate type: its decider plus the lookups and same-transaction writes around it. */
import type { AggregateType, Command, Context, DomainEvent } from "../../contracts/index.js";
import type { Decider } from "../../actors/decider.js";
import type { Repository, SqlOp } from "../persistence/index.js";

/** What facts providers may consult: storage and other aggregates' committed state. */
export interface Lookups {
  readonly repo: Repository;
  /** Another aggregate's committed state and version (`state` null when it does not exist). */
  readState<S = unknown>(aggregateType: AggregateType, aggregateId: string): Promise<{ state: S | null; version: number }>;
}

/** The runtime's binding of an aggregate type. */
export interface AggregateModule<S = any, F = any> {
  readonly context: Context;
  readonly aggregateType: AggregateType;
  readonly decider: Decider<S, any, any, F>;
  /** Looks up what the decider needs from outside the aggregate. */
  facts?(command: Command, state: S | null, lookups: Lookups): Promise<F>;
  /** Statements to run in the same transaction as the events (unique indexes, say). */
  extra?(aggregateId: string, events: DomainEvent[], state: S | null): SqlOp[];
  /** The aggregate's query view. */
  view(state: S, version: number): unknown;
}
