/** Every subscribing context of the platform (CONTRACT.md §4) and the queries they answer (§5). */
import type { EntitySchema } from "@mikro-orm/core";
import type { QueryType } from "../../contracts/index.js";
import type { QueryHandler } from "../api/index.js";
import type { Subscriber } from "../consumers/index.js";
import type { Database } from "../persistence/index.js";
import type { CommandBus } from "../runtime/index.js";

/** What subscribers may use: the command bus (process managers) and the database (read models). */
export interface SubscriberDeps {
  bus: CommandBus;
  db: Database;
  /** The policy courses move to when a deprecated policy names no replacement. */
  defaultPolicyId?: string | undefined;
}

/** Every read-model table, created with the write side when the database opens. */
export const readModelEntities: EntitySchema<any>[] = [];

/** The subscribers of this process. */
export function createSubscribers(_deps: SubscriberDeps): Subscriber[] {
  return [];
}

/** Queries answered from the read models. */
export function projectionQueries(_deps: SubscriberDeps): Partial<Record<QueryType, QueryHandler>> {
  return {};
}
