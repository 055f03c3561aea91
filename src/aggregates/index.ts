/** The runtime's bindings of the five aggregates. */
import type { AggregateModule } from "../runtime/index.js";
import type { TimerKind } from "../timers/index.js";
import { accessExpiryTimer, accessModule } from "./access.js";
import { coursesModule } from "./courses.js";
import { ordersModule } from "./orders.js";
import { policiesModule } from "./policies.js";
import { usersModule } from "./users.js";

export * from "./users.js";
export * from "./policies.js";
export * from "./courses.js";
export * from "./orders.js";
export * from "./access.js";

/** Every hosted aggregate module. */
export const aggregateModules: AggregateModule[] = [usersModule, policiesModule, coursesModule, ordersModule, accessModule];

/** Every durable timer kind. */
export const timerKinds: TimerKind[] = [accessExpiryTimer];
