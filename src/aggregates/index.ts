/** The runtime's bindings of the five aggregates. */
import type { AggregateModule } from "../runtime/index.js";
import { usersModule } from "./users.js";

export * from "./users.js";

/** Every hosted aggregate module. */
export const aggregateModules: AggregateModule[] = [usersModule];
