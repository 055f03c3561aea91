/** Upcasting: old event payloads are upgraded when read, never rewritten (emmett's approach). */
import { NerveError } from "./errors.js";
import { currentEventVersion } from "./events.js";

/** Upgrades a payload of `event_type` from version `from` to `from + 1`. */
export interface Upcaster {
  readonly eventType: string;
  readonly from: number;
  readonly to: number;
  up(payload: Record<string, unknown>): Record<string, unknown>;
}

/** A registry of upcasters; `upcast` applies them in a chain up to the current version. */
export class UpcasterRegistry {
  readonly #byKey = new Map<string, Upcaster>();

  /** Registers one step; steps must go up by exactly one version. */
  register(upcaster: Upcaster): this {
    if (upcaster.to !== upcaster.from + 1) throw new NerveError("internal", "an upcaster goes up by one version");
    const key = `${upcaster.eventType}@${upcaster.from}`;
    if (this.#byKey.has(key)) throw new NerveError("internal", `upcaster ${key} is registered twice`);
    this.#byKey.set(key, upcaster);
    return this;
  }

  /** Returns the envelope with its payload upgraded to `target` (its type's current version by default). */
  upcast<E extends { event_type: string; event_version: number; payload: Record<string, unknown> }>(
    envelope: E,
    target: number = currentEventVersion(envelope.event_type),
  ): E {
    let { event_version: version, payload } = envelope;
    while (version < target) {
      const step = this.#byKey.get(`${envelope.event_type}@${version}`);
      if (!step) throw new NerveError("internal", `no upcaster for ${envelope.event_type} from version ${version}`);
      payload = step.up(payload);
      version = step.to;
    }
    return { ...envelope, event_version: version, payload };
  }
}

/** CourseAccessGranted 1 → 2: a version-1 grant names no order (CONTRACT.md §2 "Versions"). */
export const courseAccessGrantedV1ToV2: Upcaster = {
  eventType: "CourseAccessGranted",
  from: 1,
  to: 2,
  up: (payload) => ({ ...payload, order_id: null }),
};

/** The registry every reader of the streams and the event log uses. */
export const upcasters = new UpcasterRegistry().register(courseAccessGrantedV1ToV2);
