/** Given/when/then for pure deciders (after emmett's DeciderSpecification), asserting with vitest. */
import { expect } from "vitest";
import { fold, recordAt, type Decider, type RecordedEvent } from "../../actors/decider.js";
import {
  CommandDefinitions,
  isNerveError,
  Payloads,
  type CommandBody,
  type CommandType,
  type DomainEvent,
  type ErrorCode,
  type EventType,
  type NerveError,
} from "../../contracts/index.js";

/** The default clock of a spec: when commands without `now` and given events without `occurred_on` happen. */
export const SPEC_NOW = "2026-01-15T12:00:00.000Z";

/** A command as a test writes it: `{ type, aggregate_id, body, now }`; `now` defaults to the spec's. */
export type SpecCommand<C extends CommandType> = C extends CommandType
  ? { type: C; aggregate_id: string; body: CommandBody<C>; now?: string }
  : never;

/** A past event as a test writes it; `occurred_on` defaults to the spec's `now`. */
export type GivenEvent<E extends EventType> = DomainEvent<E> & { occurred_on?: string };

/** Options of a spec: its clock and the facts every command sees unless `when` overrides them. */
export type SpecOptions<F> = { now?: string; facts?: Partial<F> };

/** The outcome checks of one `when`. */
export interface Outcome<S, E extends EventType> {
  /** Asserts exactly these events (checked against the contract, applied with evolve); returns the new state. */
  then(expected: DomainEvent<E>[]): S | null;
  /** Asserts a successful no-op: no events. */
  thenNothingHappened(): void;
  /** Asserts a NerveError with this code (and message part); returns it for checks on `details`. */
  thenThrows(code: ErrorCode, messagePart?: string): NerveError;
}

/** Starts a spec for a decider: `deciderSpec(d).given(events).when(command).then(events)`. */
export function deciderSpec<S, C extends CommandType, E extends EventType, F>(decider: Decider<S, C, E, F>, options: SpecOptions<F> = {}) {
  const now = options.now ?? SPEC_NOW;
  return {
    /** Folds past events into the state the command will see. */
    given(events: GivenEvent<E>[] = []) {
      const recorded = events.map((e) => ({ ...e, occurred_on: e.occurred_on ?? now }) as RecordedEvent<E>);
      const state = fold(decider, recorded);
      return {
        /** The state the given events produce. */
        state,
        /** Runs the command against that state with the spec's facts, overridden field by field by `facts`. */
        when(written: SpecCommand<C>, facts?: Partial<F>): Outcome<S, E> {
          const command = { ...written, now: written.now ?? now } as Parameters<typeof decider.decide>[0];
          const run = () => decider.decide(command, state, { ...options.facts, ...facts } as F);
          return {
            then(expected) {
              const events = run();
              expect(events).toStrictEqual(expected);
              return settle(decider, command, state, events);
            },
            thenNothingHappened() {
              expect(run()).toStrictEqual([]);
            },
            thenThrows(code, messagePart) {
              let caught: unknown;
              try {
                run();
              } catch (err) {
                caught = err;
              }
              if (!isNerveError(caught)) throw new Error(`expected a NerveError ${code}, got ${caught === undefined ? "success" : String(caught)}`);
              expect(caught.code, caught.message).toBe(code);
              if (messagePart !== undefined) expect(caught.message).toContain(messagePart);
              return caught;
            },
          };
        },
      };
    },
  };
}

/** Checks decided events as the runtime would (contract payloads, declared event types), then evolves. */
function settle<S, E extends EventType>(
  decider: Pick<Decider<S, CommandType, E, unknown>, "evolve">,
  command: { type: CommandType; now: string },
  from: S | null,
  events: DomainEvent<E>[],
): S | null {
  const emits: readonly EventType[] = CommandDefinitions[command.type].emits;
  for (const e of events) {
    expect(emits, `${command.type} does not declare ${e.event_type}`).toContain(e.event_type);
    const parsed = Payloads[e.event_type].safeParse(e.payload);
    expect(parsed.success, `${e.event_type} payload: ${parsed.error?.message}`).toBe(true);
  }
  const state = fold(decider, recordAt(events, command.now), from);
  // State is stored as a snapshot, so it has to survive JSON unchanged.
  expect(JSON.parse(JSON.stringify(state))).toStrictEqual(state);
  return state;
}
